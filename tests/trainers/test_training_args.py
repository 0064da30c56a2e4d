"""``training_args`` fills the job's strategy into TrainingArguments and leaves the rest.

``TrainingArguments`` with a DeepSpeed config sets process-wide state in
transformers (the ZeRO-3 flag that changes how later models are built), so these
tests record what would be passed; the real thing runs in test_strategies.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from nblaunch.errors import SpecError
from nblaunch.trainers import hf


@pytest.fixture
def passed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(hf, "TrainingArguments", lambda **kw: calls.append(kw) or kw)
    for name in ("NBLAUNCH_STRATEGY", "NBLAUNCH_ZERO_STAGE", "NBLAUNCH_OFFLOAD"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_no_strategy_changes_nothing(passed: list[dict[str, Any]]) -> None:
    assert hf.training_args(output_dir="out", max_steps=5) == {"output_dir": "out", "max_steps": 5}


def test_ddp_changes_nothing(passed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLAUNCH_STRATEGY", "ddp")
    assert hf.training_args(output_dir="out") == {"output_dir": "out"}


def test_deepspeed_from_the_job(
    passed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBLAUNCH_STRATEGY", "deepspeed")
    args = hf.training_args(output_dir="out", learning_rate=0.1)
    assert args["output_dir"] == "out" and args["learning_rate"] == 0.1
    config = args["deepspeed"]
    assert config["zero_optimization"] == {"stage": 2}
    assert "optimizer" not in config  # the torch optimizer: nothing to JIT-compile
    assert config["train_micro_batch_size_per_gpu"] == "auto"

    monkeypatch.setenv("NBLAUNCH_ZERO_STAGE", "3")
    monkeypatch.setenv("NBLAUNCH_OFFLOAD", "1")
    config = hf.training_args(output_dir="out")["deepspeed"]
    assert config["zero_optimization"] == {
        "stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"},
    }  # fmt: skip
    assert config["zero_force_ds_cpu_optimizer"] is False


def test_zero_stage_argument_wins_and_turns_deepspeed_on(
    passed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hf.training_args(zero_stage=1, output_dir="out")["deepspeed"]
    assert config["zero_optimization"] == {"stage": 1}
    monkeypatch.setenv("NBLAUNCH_STRATEGY", "deepspeed")
    monkeypatch.setenv("NBLAUNCH_ZERO_STAGE", "3")
    monkeypatch.setenv("NBLAUNCH_OFFLOAD", "1")
    config = hf.training_args(zero_stage=2, offload=False, output_dir="out")["deepspeed"]
    assert config["zero_optimization"] == {"stage": 2}
    assert "zero_force_ds_cpu_optimizer" not in config


def test_the_users_own_config_wins(
    passed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBLAUNCH_STRATEGY", "deepspeed")
    assert hf.training_args(deepspeed="ds.json")["deepspeed"] == "ds.json"
    monkeypatch.setenv("NBLAUNCH_STRATEGY", "fsdp")
    assert hf.training_args(fsdp="shard_grad_op")["fsdp"] == "shard_grad_op"


def test_bad_zero_stage_is_one_line(passed: list[dict[str, Any]]) -> None:
    with pytest.raises(SpecError, match="ZeRO stage 4 is not valid; use 0, 1, 2 or 3"):
        hf.training_args(zero_stage=4)


def test_trainer_fsdp_without_cuda_says_what_to_do(
    passed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv("NBLAUNCH_STRATEGY", "fsdp")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match="needs CUDA GPUs.*fully_shard"):
        hf.training_args(output_dir="out")
    assert passed == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = hf.training_args(output_dir="out")
    assert args["fsdp"] == "full_shard auto_wrap" and args["fsdp_config"] == {"version": 2}


def test_missing_deepspeed_names_the_extra(
    passed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nblaunch.errors import MissingDependencyError

    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'nblaunch\[deepspeed\]'"):
        hf.training_args(zero_stage=2)
