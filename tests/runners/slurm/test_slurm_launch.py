"""``%%launch --queue <slurm> --nodes 2 --gpus 1`` from a real IPython shell: the cell
runs as DDP over two Slurm nodes (srun starts the runtime on each, torchrun one
rank per node, gloo), every rank keeps its notebook, and the job's card names
its Slurm job."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nblaunch.queue.states import State
from nblaunch.widgets.render import job_header_html
from tests.extension.conftest import outputs_text
from tests.runners.slurm.conftest import slurm_job

DDP_CELL = """\
import os, socket
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
node = os.environ["SLURMD_NODENAME"]
print(f"rank {rank} of {world} on {node}: sum {total.item():g}", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_launch_runs_ddp_across_two_slurm_nodes(ip: InteractiveShell, slurm_home: Path) -> None:
    job = ip.run_cell_magic(
        "launch", "--queue slurm --nodes 2 --gpus 1 --no-widget --name two-nodes", DDP_CELL
    )
    assert job.wait(timeout=300) is State.SUCCEEDED, job.logs()
    snap = job.snapshot(metrics=False)
    slurm_id = snap.external_id
    assert slurm_id is not None
    assert f"slurm job {slurm_id}" in job_header_html(snap)
    assert slurm_job(slurm_id)["NumNodes"] == "2"
    run_dir = job.run_dir
    texts = [
        outputs_text(run_dir / "output.ipynb"),
        outputs_text(run_dir / "ranks" / "1" / "output.ipynb"),
    ]
    assert "rank 0 of 2 on node1: sum 3" in texts[0], texts
    assert "rank 1 of 2 on node2: sum 3" in texts[1], texts
    assert (run_dir / "ranks" / "0" / "stdout.log").exists()
