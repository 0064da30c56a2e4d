"""Memory verdicts for known cases, and the smallest change that fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from nblaunch.jobs.estimate import estimate
from nblaunch.jobs.memory import activation_bytes, fit, model_state_bytes, sharding_stage


def test_7b_full_finetune_does_not_fit_one_a100_80gb_with_ddp(nbl_home: Path) -> None:
    est = estimate(params="7B", tokens="1B", gpu="A100-80GB", gpus=1, strategy="ddp")
    assert est.memory_per_gpu_gb == pytest.approx(112.0)  # 7e9 × 16 bytes
    assert not est.fits
    assert est.suggestion == (
        "needs ~112 GB per GPU, A100-80GB has 80 GB: use ZeRO-1 on 2 GPUs, or H200, "
        "or CPU offload (ZeRO-Offload)"
    )


def test_7b_fits_8_a100_80gb_with_zero3(nbl_home: Path) -> None:
    est = estimate(params="7B", tokens="1B", gpu="A100-80GB", gpus=8, zero=3)
    assert est.memory_per_gpu_gb == pytest.approx(14.0)  # 112 GB / 8
    assert est.fits and est.suggestion is None
    fsdp = estimate(params="7B", tokens="1B", gpu="A100-80GB", gpus=8, strategy="fsdp")
    assert fsdp.memory_per_gpu_gb == est.memory_per_gpu_gb


def test_7b_ddp_on_8_gpus_still_a_full_copy(nbl_home: Path) -> None:
    est = estimate(params="7B", tokens="1B", gpu="A100-80GB", gpus=8)
    assert est.memory_per_gpu_gb == pytest.approx(112.0)
    assert not est.fits
    assert est.suggestion is not None and "use ZeRO-1 on 8 GPUs" in est.suggestion


def test_124m_fits_a_t4(nbl_home: Path) -> None:
    est = estimate(params="124M", tokens="1B", gpu="T4")
    assert est.memory_per_gpu_gb == pytest.approx(1.984)
    assert est.fits


def test_stages_divide_model_state_as_zero_says() -> None:
    n, g = 1e9, 4
    assert model_state_bytes(n, g, 0) == 16e9
    assert model_state_bytes(n, g, 1) == 2e9 + 2e9 + 12e9 / 4
    assert model_state_bytes(n, g, 2) == 2e9 + 14e9 / 4
    assert model_state_bytes(n, g, 3) == 16e9 / 4
    assert model_state_bytes(n, g, 2, offload=True) == 2e9
    assert model_state_bytes(n, g, 3, offload=True) == 2e9 / 4
    assert sharding_stage("ddp", None) == 0
    assert sharding_stage("fsdp", None) == 3
    assert sharding_stage("deepspeed", 2) == 2


def test_activations_count_when_shape_is_known(nbl_home: Path) -> None:
    # 34 × seq 2048 × batch 8 × hidden 4096 × 32 layers = 73.0 GB, plus 14 GB of ZeRO-3 state
    est = estimate(
        params="7B",
        tokens="1B",
        gpu="A100-80GB",
        gpus=8,
        zero=3,
        batch_size=8,
        seq_len=2048,
        layers=32,
        hidden=4096,
    )
    assert est.activations_gb == pytest.approx(73.014, rel=1e-4)
    assert est.memory_per_gpu_gb == pytest.approx(87.014, rel=1e-4)
    assert not est.fits
    assert est.suggestion is not None and "H200" in est.suggestion
    assert activation_bytes(8, 2048, None, 4096) is None


def test_activation_bound_run_is_told_to_lower_the_batch() -> None:
    act = activation_bytes(64, 2048, 32, 4096)
    assert act is not None
    verdict = fit(
        7e9,
        gpu_name="A100-80GB",
        capacity_gb=80,
        devices=8,
        stage=3,
        activations=act,
        batch_size=64,
    )
    assert not verdict.fits
    assert verdict.suggestion is not None
    # 80 GB - 14 GB of state leaves room for 7 examples of 9.13 GB
    assert "lower the per-GPU batch to 7" in verdict.suggestion


def test_every_kind_of_fix_is_offered() -> None:
    verdict = fit(7e9, gpu_name="T4", capacity_gb=16, devices=1, stage=0)
    assert verdict.suggestion == (
        "needs ~112 GB per GPU, T4 has 16 GB: use ZeRO-3 on 8 GPUs, or H200, "
        "or CPU offload (ZeRO-Offload)"
    )
    too_big = fit(400e9, gpu_name="H100-SXM", capacity_gb=80, devices=1, stage=0)
    assert (
        too_big.suggestion == "needs ~6400 GB per GPU, H100-SXM has 80 GB: use ZeRO-3 on 128 GPUs"
    )


def test_a_bigger_card_of_the_same_family_comes_first() -> None:
    verdict = fit(3e9, gpu_name="A100-40GB", capacity_gb=40, devices=1, stage=0)
    assert verdict.suggestion is not None and ", or A100-80GB," in verdict.suggestion
