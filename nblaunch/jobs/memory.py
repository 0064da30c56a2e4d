"""Does a run fit in GPU memory, and if not, what is the smallest change that does.

Model state under mixed-precision Adam is 16 bytes per parameter (ZeRO,
Rajbhandari et al. 2020, §3.1): 2 for bf16/fp16 weights, 2 for their
gradients, 12 for the fp32 master copy and Adam's two moments. Data
parallelism over ``G`` GPUs divides it:

=========  ==============================  =========================
stage      per-GPU model state             strategy
=========  ==============================  =========================
0          2 + 2 + 12                      DDP, no sharding
1          2 + 2 + 12/G                    ZeRO-1 (optimizer state)
2          2 + (2 + 12)/G                  ZeRO-2 (+ gradients)
3          (2 + 2 + 12)/G                  ZeRO-3, FSDP full shard
=========  ==============================  =========================

CPU offload (ZeRO-Offload) moves the fp32 state and the gradients to host
memory, leaving the bf16 weights (sharded too under stage 3).

Activations add ``34·s·b·h`` bytes per layer (Korthikanti et al. 2022,
"Reducing Activation Recomputation", eq. 2 with FlashAttention, which does
not keep the ``5·a·s²·b`` attention scores) when batch, sequence, layers
and hidden size are known.
"""

from __future__ import annotations

from dataclasses import dataclass

from nblaunch.errors import SpecError
from nblaunch.jobs.gpus import CATALOG
from nblaunch.options import STRATEGIES

__all__ = ["MemoryFit", "fit", "model_state_bytes", "sharding_stage"]
_GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class MemoryFit:
    """Per-GPU memory need against capacity, with the verdict and a fix."""

    per_gpu_gb: float
    model_state_gb: float
    activations_gb: float | None
    capacity_gb: float
    fits: bool
    suggestion: str | None


def sharding_stage(strategy: str, zero: int | None) -> int:
    """The ZeRO stage a strategy shards model state at (``--zero`` wins when given)."""
    if strategy not in STRATEGIES:
        raise SpecError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if zero is not None:
        if zero not in (0, 1, 2, 3):
            raise SpecError(f"zero stage must be 0, 1, 2 or 3 (got {zero!r})")
        return zero
    # FSDP's default FULL_SHARD is ZeRO-3; DeepSpeed without a stage runs stage 0.
    return 3 if strategy == "fsdp" else 0


def model_state_bytes(params: float, devices: int, stage: int, offload: bool = False) -> float:
    """Bytes of weights + gradients + Adam state one GPU holds."""
    g = max(devices, 1)
    if offload:
        return 2 * params / (g if stage == 3 else 1)
    weights, grads, optim = 2 * params, 2 * params, 12 * params
    if stage >= 1:
        optim /= g
    if stage >= 2:
        grads /= g
    if stage >= 3:
        weights /= g
    return weights + grads + optim


def activation_bytes(
    batch_size: int | None, seq_len: int | None, layers: int | None, hidden: int | None
) -> float | None:
    """``34·s·b·h·L`` bytes, or None unless all four are known."""
    if not (batch_size and seq_len and layers and hidden):
        return None
    return 34.0 * seq_len * batch_size * hidden * layers


def fit(
    params: float,
    *,
    gpu_name: str,
    capacity_gb: float,
    devices: int,
    stage: int,
    offload: bool = False,
    activations: float | None = None,
    batch_size: int | None = None,
) -> MemoryFit:
    """Verdict for one configuration, and the smallest change that fits when it does not.

    Offered, each on its own: the lowest ZeRO stage on the fewest GPUs
    (the same ones first), the smallest larger GPU in the catalog, and CPU
    offload on the same GPUs; when none fits and activations dominate, a
    smaller per-GPU batch.
    """
    act = activations or 0.0
    state = model_state_bytes(params, devices, stage, offload)
    need = state + act
    fits = need <= capacity_gb * 1e9
    suggestion = None
    if not fits:
        suggestion = _suggest(
            params, gpu_name, capacity_gb, devices, stage, offload, act, batch_size, need
        )
    return MemoryFit(
        per_gpu_gb=need / 1e9,
        model_state_gb=state / 1e9,
        activations_gb=None if activations is None else act / 1e9,
        capacity_gb=capacity_gb,
        fits=fits,
        suggestion=suggestion,
    )


def _suggest(
    params: float,
    gpu_name: str,
    capacity_gb: float,
    devices: int,
    stage: int,
    offload: bool,
    act: float,
    batch_size: int | None,
    need: float,
) -> str:
    cap = capacity_gb * 1e9
    head = f"needs ~{need / 1e9:.0f} GB per GPU, {gpu_name} has {capacity_gb:.0f} GB"
    options: list[str] = []
    sharded = _sharded_fit(params, cap, devices, stage, offload, act)
    if sharded:
        options.append(sharded)
    current = CATALOG.get(gpu_name)
    # Among cards of the least memory that fits, the same family is the smaller change
    # (A100-40GB -> A100-80GB), then the fastest.
    bigger = [
        g
        for g in sorted(
            CATALOG.values(),
            key=lambda g: (
                g.memory_gb,
                current is None or g.family != current.family,
                -g.peak_tflops,
            ),
        )
        if g.memory_gb > capacity_gb
        and model_state_bytes(params, devices, stage, offload) + act <= g.memory_gb * 1e9
    ]
    if bigger:
        options.append(bigger[0].name)
    if not offload and model_state_bytes(params, devices, stage, True) + act <= cap:
        options.append("CPU offload (ZeRO-Offload)")
    if options:
        return f"{head}: use " + ", or ".join(options)
    if act > 0 and batch_size and batch_size > 1:
        per_example = act / batch_size
        room = cap - model_state_bytes(params, devices, stage, offload)
        if room >= per_example:
            return (
                f"{head}: lower the per-GPU batch to {int(room // per_example)} "
                "(or use activation checkpointing)"
            )
        for count in (c for c in _GPU_COUNTS if c >= devices):
            room = cap - model_state_bytes(params, count, 3, offload)
            if room >= per_example:
                return (
                    f"{head}: no single change fits; use ZeRO-3 on {count} GPUs with a "
                    f"per-GPU batch of {int(room // per_example)} (or activation checkpointing)"
                )
    return f"{head}: no single change fits; combine ZeRO-3, more GPUs and activation checkpointing"


def _sharded_fit(
    params: float, cap: float, devices: int, stage: int, offload: bool, act: float
) -> str | None:
    for count in sorted({devices, *(c for c in _GPU_COUNTS if c > devices)}):
        for k in range(stage if count > devices else stage + 1, 4):
            if count == 1 and k > 0:
                break  # sharding over one GPU divides nothing
            if model_state_bytes(params, count, k, offload) + act <= cap:
                return f"ZeRO-{k} on {count} GPU{'s' if count > 1 else ''}"
    return None
