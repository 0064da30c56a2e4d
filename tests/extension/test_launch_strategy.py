"""``%%launch --strategy ddp --gpus 2`` in a real InteractiveShell: the cell runs as a
job of 2 ranks under torchrun (gloo on CPU), each rank with a kernel of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nblaunch.queue.states import State
from tests.conftest import write_queues
from tests.extension.conftest import outputs_text

DDP_CELL = """\
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(rank)  # each rank starts from different weights and sees different data
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(5):
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad()
mine = torch.cat([p.detach().flatten() for p in model.parameters()])
everyone = [torch.zeros_like(mine) for _ in range(world)]
dist.all_gather(everyone, mine)
assert all(torch.equal(theirs, mine) for theirs in everyone), everyone
print(f"rank {rank} of {world}: replicas agree after 5 steps")
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_launch_cell_runs_as_two_ddp_ranks(ip: InteractiveShell, nbl_home: Path) -> None:
    write_queues(nbl_home, "[queues.local]\ngpus = 2\n")
    job = ip.run_cell_magic(
        "launch", "--strategy ddp --gpus 2 --wait --no-widget --name ddp-cell", DDP_CELL
    )
    assert job.state is State.SUCCEEDED, job.logs()
    assert (job.spec.strategy, job.spec.gpus) == ("ddp", 2)
    run_dir = job.run_dir
    assert job.output_notebook == run_dir / "output.ipynb"
    assert "rank 0 of 2: replicas agree" in outputs_text(job.output_notebook)
    assert "rank 1 of 2: replicas agree" in outputs_text(run_dir / "ranks" / "1" / "output.ipynb")
    for rank in (0, 1):
        log = (run_dir / "ranks" / str(rank) / "stdout.log").read_text()
        assert f"rank {rank} of 2: replicas agree" in log


DEEPSPEED_CELL = """\
import os
import torch
import deepspeed
from nblaunch.trainers.hf import deepspeed_config

stage = int(os.environ["NBLAUNCH_ZERO_STAGE"])  # from %%launch --zero
config = deepspeed_config(stage, offload=False) | {
    "train_micro_batch_size_per_gpu": 4, "train_batch_size": 8, "gradient_accumulation_steps": 1,
    "gradient_clipping": 1.0, "bf16": {"enabled": False}, "fp16": {"enabled": False},
}
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
for _ in range(3):
    loss = engine(torch.randn(4, 8)).pow(2).mean()
    engine.backward(loss)
    engine.step()
print(f"rank {engine.global_rank} of {engine.world_size}: ZeRO stage {engine.zero_optimization_stage()}")
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_launch_cell_runs_under_deepspeed_zero(
    ip: InteractiveShell, nbl_home: Path, torch_extensions: Path, stage: int
) -> None:
    write_queues(nbl_home, "[queues.local]\ngpus = 2\n")
    job = ip.run_cell_magic(
        "launch",
        f"--strategy deepspeed --zero {stage} --gpus 2 --wait --no-widget --name zero{stage}",
        DEEPSPEED_CELL,
    )
    assert job.state is State.SUCCEEDED, job.logs()
    assert job.spec.options == {"zero": stage}
    run_dir = job.run_dir
    assert f"rank 0 of 2: ZeRO stage {stage}" in outputs_text(job.output_notebook)
    assert f"rank 1 of 2: ZeRO stage {stage}" in outputs_text(
        run_dir / "ranks" / "1" / "output.ipynb"
    )
