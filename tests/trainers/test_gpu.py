"""What needs CUDA GPUs: NCCL, the Trainer's FSDP, bf16 mixed precision.

Each runs the example notebooks through ``nblaunch submit`` on a local queue
with the machine's GPUs, once on 1 GPU and once on 2 (each variant skipped, with
the reason, where the machine has fewer). ``benchmarks/gpu_checks.sh`` runs
every test marked ``gpu`` on a GPU machine.
"""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest

from tests.trainers.conftest import NOTEBOOKS, losses, rank_texts, submit_example

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def cuda_devices() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


def _ranks(count: int) -> object:
    found = cuda_devices()
    reason = f"needs {count} CUDA GPU(s); this machine has {found}"
    return pytest.param(
        count, marks=pytest.mark.skipif(found < count, reason=reason), id=f"{count}gpu"
    )


RANKS = [_ranks(1), _ranks(2)]
STEPS = ["-p", "max_steps", "40", "-p", "logging_steps", "10", "-p", "save_steps", "20"]


def _decreasing(job_losses: dict[int, float]) -> None:
    assert sorted(job_losses) == [10, 20, 30, 40]
    assert all(math.isfinite(v) for v in job_losses.values()), job_losses
    assert job_losses[40] < job_losses[10], job_losses


@pytest.mark.parametrize("ranks", RANKS)
def test_ddp_over_nccl(nbl_home: Path, tmp_path: Path, ranks: int) -> None:
    data, job = submit_example(
        nbl_home, tmp_path, "02_ddp.ipynb", "--gpus", str(ranks), "--strategy", "ddp", *STEPS,
        gpus=cuda_devices(),
    )  # fmt: skip
    for rank, text in enumerate(rank_texts(data, ranks)):
        assert f"rank {rank}: 40 steps on {ranks} process(es), cuda:{rank} (nccl)" in text, text
    _decreasing(losses(job))


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize(
    ("notebook", "options"),
    [
        ("02_ddp.ipynb", ["--strategy", "ddp"]),
        ("03_deepspeed.ipynb", ["--strategy", "deepspeed", "--zero", "3"]),
    ],
    ids=["ddp", "zero3"],
)
def test_bf16_mixed_precision(
    nbl_home: Path,
    tmp_path: Path,
    torch_extensions: Path,
    notebook: str,
    options: list[str],
    ranks: int,
) -> None:
    data, job = submit_example(
        nbl_home, tmp_path, notebook, "--gpus", str(ranks), *options, "-p", "bf16", "True", *STEPS,
        gpus=cuda_devices(),
    )  # fmt: skip
    texts = rank_texts(data, ranks)
    assert "(nccl)" in texts[0]
    if "deepspeed" in options:
        assert "DeepSpeedEngine, ZeRO stage 3" in texts[0]
    _decreasing(losses(job))


@pytest.mark.parametrize("ranks", RANKS)
def test_trainer_fsdp(nbl_home: Path, tmp_path: Path, ranks: int) -> None:
    """02's Trainer with ``training_args`` filling the job's ``--strategy fsdp``."""
    nb = nbformat.read(NOTEBOOKS / "02_ddp.ipynb", as_version=4)
    (args_cell,) = [c for c in nb.cells if "args = TrainingArguments(" in c.source]
    args_cell.source = args_cell.source.replace(
        "args = TrainingArguments(",
        "from nblaunch.trainers.hf import training_args\n\nargs = training_args(",
    )
    nb.cells.append(nbformat.v4.new_code_cell(
        "print('fsdp:', trainer.is_fsdp_enabled, type(trainer.model_wrapped).__name__)"
    ))  # fmt: skip
    folder = tmp_path / "derived"
    folder.mkdir()
    nbformat.write(nb, folder / "trainer_fsdp.ipynb")
    data, job = submit_example(
        nbl_home, tmp_path, folder / "trainer_fsdp.ipynb", "--gpus", str(ranks), "--strategy", "fsdp",
        *STEPS, gpus=cuda_devices(),
    )  # fmt: skip
    texts = rank_texts(data, ranks)
    assert "fsdp: True" in texts[0], texts[0]
    assert "FSDP" in texts[0] or "FullyShardedDataParallel" in texts[0], texts[0]  # FSDP2 / FSDP1
    _decreasing(losses(job))


@pytest.mark.skipif(cuda_devices() < 1, reason="needs a CUDA GPU")
def test_cuda_out_of_memory_ends_with_class_oom(nbl_home: Path, tmp_path: Path) -> None:
    import nblaunch
    from tests.conftest import make_notebook

    nb = make_notebook(
        tmp_path / "cuda_oom.ipynb",
        "import torch\ntotal = torch.cuda.get_device_properties(0).total_memory",
        "blob = torch.empty(2 * total, dtype=torch.uint8, device='cuda')",
    )
    job = nblaunch.submit(nb, gpus=1)
    assert job.wait(timeout=300).value == "failed", job.logs()
    snap = job.snapshot(metrics=False)
    assert snap.error is not None and snap.error.ename == "OutOfMemoryError", snap.error
    assert [a.failure_class for a in snap.attempts] == ["oom"]
