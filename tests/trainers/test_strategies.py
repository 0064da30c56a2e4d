"""DDP, DeepSpeed ZeRO-2 / ZeRO-3 and plain-torch FSDP with 2 ranks on CPU (gloo),
each through ``nblaunch submit --gpus 2 --strategy ...`` on the example notebooks.

The local queue is given 2 GPU slots; on this machine they are CPU processes
(``CUDA_VISIBLE_DEVICES`` names GPUs that do not exist, and torch sees none).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainers.conftest import losses, outputs_text, rank_texts, submit_example

pytestmark = pytest.mark.slow
STEPS = ["-p", "max_steps", "40", "-p", "logging_steps", "10", "-p", "save_steps", "20"]


def test_ddp_two_ranks(nbl_home: Path, tmp_path: Path) -> None:
    data, job = submit_example(
        nbl_home, tmp_path, "02_ddp.ipynb", "--gpus", "2", "--strategy", "ddp", *STEPS
    )
    assert job.spec.strategy == "ddp" and job.spec.gpus == 2
    texts = rank_texts(data, 2)
    for rank, text in enumerate(texts):
        assert (
            f"rank {rank}: 40 steps on 2 process(es), cpu:0 (gloo), 16 sequences per step" in text
        )
    assert sorted(losses(job)) == [10, 20, 30, 40]
    checkpoints = job.row.job_dir / "checkpoints" / "tiny-gpt2-ddp"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [
        "checkpoint-20",
        "checkpoint-40",
    ]


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero(nbl_home: Path, tmp_path: Path, torch_extensions: Path, stage: int) -> None:
    data, job = submit_example(
        nbl_home, tmp_path, "03_deepspeed.ipynb",
        "--gpus", "2", "--strategy", "deepspeed", "--zero", str(stage), *STEPS,
    )  # fmt: skip
    assert job.spec.options == {"zero": stage}
    texts = rank_texts(data, 2)
    for rank, text in enumerate(texts):
        assert (
            f"rank {rank}: 40 steps on 2 process(es), cpu:0 (gloo), DeepSpeedEngine, ZeRO stage {stage}"
            in text
        )
    assert sorted(losses(job)) == [10, 20, 30, 40]
    # ZeRO keeps one optimizer shard per rank in each checkpoint
    shards = (
        job.row.job_dir / "checkpoints" / "tiny-gpt2-deepspeed" / "checkpoint-40" / "global_step40"
    )
    assert len(list(shards.glob("*optim_states.pt"))) == 2
    # the per-step deprecation warnings DeepSpeed triggers are filtered in the notebook
    assert "is deprecated" not in outputs_text(Path(data["output_notebook"]))


def test_fsdp_two_ranks_saves_and_resumes_exactly(nbl_home: Path, tmp_path: Path) -> None:
    """Plain torch FSDP2 (``fully_shard``) with gloo; torch.distributed.checkpoint saves
    each rank's shards, and a run resumed from step 20 logs the same losses at 30, 40."""
    checkpoints = tmp_path / "checkpoints"
    options = [
        "--gpus",
        "2",
        "--strategy",
        "fsdp",
        "-p",
        "checkpoint_dir",
        str(checkpoints),
        "-p",
        "max_steps",
        "40",
        "-p",
        "save_every",
        "20",
    ]
    data, first = submit_example(nbl_home, tmp_path, "07_fsdp.ipynb", *options)
    rank_texts(data, 2)
    saved = checkpoints / "tiny-gpt2-fsdp"
    assert sorted(p.name for p in saved.iterdir()) == ["step-20", "step-40"]
    assert sorted(p.name for p in (saved / "step-20").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    reference = losses(first)
    assert sorted(reference) == [10, 20, 30, 40]

    # Without its last checkpoint the same job resumes from step 20 on both ranks.
    for path in (saved / "step-40").iterdir():
        path.unlink()
    (saved / "step-40").rmdir()
    data, resumed = submit_example(nbl_home, tmp_path, "07_fsdp.ipynb", *options)
    for text in rank_texts(data, 2):
        assert "resumed from step 20" in text
    assert losses(resumed) == {30: reference[30], 40: reference[40]}
    assert json.loads((Path(data["run_dir"]) / "result.json").read_text())["state"] == "succeeded"
