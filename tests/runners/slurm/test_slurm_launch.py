"""Jobs across two Slurm nodes: ``%%launch --queue <slurm> --nodes 2 --gpus 1`` from a
real IPython shell runs the cell as DDP (srun starts the runtime on each node,
torchrun one rank per node, gloo), every rank keeps its notebook, and the card
names the Slurm job; a preempted two-node job checkpoints and resumes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

import nblaunch
from nblaunch.queue.states import State
from nblaunch.widgets.render import job_header_html
from tests.conftest import make_notebook, run_cli, wait_until
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


DDP_LOOP = """\
import json, os, time
import torch
import torch.distributed as dist
import nblaunch

dist.init_process_group("gloo")
rank = dist.get_rank()
ckpt = os.path.join(os.environ["NBLAUNCH_CHECKPOINT_DIR"], "step.json")
start = json.load(open(ckpt))["step"] if os.path.exists(ckpt) else 0
print("resumed from", start, flush=True)
step = start
while step < steps:
    stop = torch.tensor([float(nblaunch.preempted())])
    dist.all_reduce(stop)  # every rank stops at the same step
    if stop.item():
        break
    time.sleep(0.05)
    step += 1
    nblaunch.log({"step_done": step}, step=step)
if rank == 0:
    json.dump({"step": step}, open(ckpt, "w"))
print(f"rank {rank} stopped at {step}, preempted: {nblaunch.preempted()}", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_a_preempted_two_node_job_checkpoints_on_every_rank_and_resumes(
    slurm_home: Path, tmp_path: Path
) -> None:
    nb = make_notebook(tmp_path / "ddp.ipynb", DDP_LOOP, params="steps = 10")
    job = nblaunch.submit(nb, queue="slurm", gpus=1, nodes=2, params={"steps": 600})
    wait_until(lambda: len(job.metrics()) >= 20, 180, "the ranks to train")
    assert run_cli("preempt", job.id).returncode == 0
    assert job.wait(timeout=300) is State.SUCCEEDED, job.logs()
    attempts = job.snapshot(metrics=False).attempts
    assert [a.failure_class for a in attempts] == ["preempted", None], attempts
    first = job.row.job_dir / "attempts" / "1"
    # SIGTERM reached both nodes' ranks (srun was never signalled, so it killed nothing).
    assert "preempted: True" in outputs_text(first / "output.ipynb")
    assert "rank 1 stopped at" in outputs_text(first / "ranks" / "1" / "output.ipynb")
    resumed = re.search(r"resumed from (\d+)", job.logs(2))
    assert resumed and int(resumed.group(1)) >= 20, job.logs(2)
