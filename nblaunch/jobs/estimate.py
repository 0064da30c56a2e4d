"""Before submit: how long a run takes, what it costs on-demand and on spot, and if it fits.

Time is training FLOPs over throughput: ``6·N·T / (devices × peak × MFU)``
(Kaplan et al. 2020: forward 2·N·T, backward twice that), plus the fixed
per-job overhead a calibrated queue has measured. On spot, expected
preemptions are runtime × rate, and each costs the restart plus, on
average, half a checkpoint interval of lost work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nblaunch.errors import SpecError
from nblaunch.home import home, store_path
from nblaunch.jobs import memory
from nblaunch.jobs.calibration import Calibration, calibrate
from nblaunch.jobs.gpus import DEFAULT_MFU
from nblaunch.jobs.hardware import Device, resolve_device
from nblaunch.jobs.sizes import count_tokens, model_size
from nblaunch.options import Strategy
from nblaunch.queue.config import get_queue
from nblaunch.queue.store import Store
from nblaunch.runners.base import QueueOptions

__all__ = ["Estimate", "estimate", "DEFAULT_RESTART_S", "DEFAULT_CHECKPOINT_INTERVAL_S"]

# Assumed when not given: a replacement spot VM is provisioned, pulls its image
# and reloads the model in about ten minutes; checkpoints every half hour.
DEFAULT_RESTART_S = 600.0
DEFAULT_CHECKPOINT_INTERVAL_S = 1800.0


@dataclass(frozen=True)
class Estimate:
    """An estimate of one training run; :meth:`to_dict` is its JSON form.

    Times are hours of wall time, costs USD; ``None`` where an input is
    missing (no price: no cost; no spot price or preemption rate: no spot
    figures). ``gpus`` is per node; a CPU run reports ``gpu="CPU"``,
    ``gpus=0`` and costs no GPU-hours.
    """

    hours: float
    cost_usd: float | None
    spot_hours: float | None
    spot_cost_usd: float | None
    mfu: float
    mfu_source: str
    memory_per_gpu_gb: float
    fits: bool
    suggestion: str | None
    flops: float
    gpu: str
    gpus: int
    nodes: int
    strategy: str
    zero: int | None
    peak_tflops: float
    price_per_gpu_hour: float | None
    spot_price_per_gpu_hour: float | None
    preemptions_expected: float | None
    params: float
    tokens: float
    queue: str | None
    offload: bool
    compute_hours: float
    overhead_s: float
    memory_capacity_gb: float
    model_state_gb: float
    activations_gb: float | None
    preemptions_per_hour: float | None
    restart_s: float
    checkpoint_interval_s: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (``notes`` as a list)."""
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        return data


class _Options(BaseModel):
    """The numeric and enumerated options, checked in one place."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int = Field(ge=0)
    nodes: int = Field(ge=1)
    strategy: Strategy
    zero: Literal[0, 1, 2, 3] | None
    offload: bool
    batch_size: int | None = Field(ge=1)
    seq_len: int | None = Field(ge=1)
    layers: int | None = Field(ge=1)
    hidden: int | None = Field(ge=1)
    epochs: float = Field(gt=0)
    price_per_gpu_hour: float | None = Field(ge=0)
    spot_price_per_gpu_hour: float | None = Field(ge=0)
    preemptions_per_hour: float | None = Field(ge=0)
    restart_s: float = Field(ge=0)
    checkpoint_interval_s: float = Field(ge=0)
    mfu: float | None = Field(gt=0, le=1)


def _check(values: dict[str, Any]) -> _Options:
    try:
        return _Options(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise SpecError(
            f"estimate option {field}: {err['msg']} (got {err.get('input')!r})"
        ) from None


def estimate(
    *,
    params: float | str | object,
    tokens: float | str | Sized,
    gpu: str | None = None,
    gpus: int = 1,
    nodes: int = 1,
    strategy: str = "ddp",
    zero: int | None = None,
    offload: bool = False,
    queue: str | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    layers: int | None = None,
    hidden: int | None = None,
    spot: bool = False,
    root: Path | None = None,
    epochs: float = 1.0,
    price_per_gpu_hour: float | None = None,
    spot_price_per_gpu_hour: float | None = None,
    preemptions_per_hour: float | None = None,
    restart_s: float = DEFAULT_RESTART_S,
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
    mfu: float | None = None,
) -> Estimate:
    """Estimate time, cost (on-demand and spot) and memory fit of a training run.

    Parameters
    ----------
    params
        Model size: a count (``124M``, ``7B``, ``1.3e9``), an HF config (a
        folder with ``config.json``, a config object or dict) or a model.
    tokens
        Training tokens (``1B``, ``3e9``), or a dataset of fixed-length
        examples (its length × ``seq_len``); multiplied by ``epochs``.
    gpu
        Catalog name (``A100-80GB``, ``H100-SXM`` …) or ``CPU``; default: the
        queue's ``gpu_type``, else the local machine's device.
    gpus, nodes
        GPUs per node and nodes; all of them are data-parallel workers.
    strategy, zero, offload
        How model state is divided: ``ddp``/``none`` keep a full copy,
        ``fsdp`` shards like ZeRO-3; ``zero`` (0-3) overrides; ``offload``
        moves optimizer state to CPU memory.
    queue
        Queue whose price, spot price, preemption rate and finished jobs
        (calibrated MFU and overhead) to use.
    batch_size, seq_len, layers, hidden
        Per-GPU micro-batch and model shape, for the activation estimate;
        ``layers``/``hidden`` default to the HF config's when one is given.
    spot
        Ask for spot figures: a spot price is then required.
    root
        ``$NBLAUNCH_HOME`` (default: the environment's).
    epochs
        Passes over ``tokens``.
    price_per_gpu_hour, spot_price_per_gpu_hour, preemptions_per_hour
        Override the queue's values (or stand in for a queue).
    restart_s, checkpoint_interval_s
        Spot overhead per preemption: the restart, plus half an interval.
    mfu
        Use this MFU instead of the calibrated or default one.

    Raises
    ------
    SpecError
        Unknown GPU, a count that is not positive, an invalid option, or
        ``spot=True`` without a spot price.
    UnknownQueueError
        ``queue`` is not configured.
    """
    opts = _check(
        dict(
            gpus=gpus,
            nodes=nodes,
            strategy=strategy,
            zero=zero,
            offload=offload,
            batch_size=batch_size,
            seq_len=seq_len,
            layers=layers,
            hidden=hidden,
            epochs=epochs,
            price_per_gpu_hour=price_per_gpu_hour,
            spot_price_per_gpu_hour=spot_price_per_gpu_hour,
            preemptions_per_hour=preemptions_per_hour,
            restart_s=restart_s,
            checkpoint_interval_s=checkpoint_interval_s,
            mfu=mfu,
        )
    )
    size = model_size(params)
    n_tokens = count_tokens(tokens, seq_len=opts.seq_len, epochs=opts.epochs)
    root = root or home()
    config = get_queue(root, queue) if queue else None
    device = resolve_device(gpu, opts.gpus, config, root)
    notes = [device.note] if device.note else []

    workers = opts.nodes * (1 if device.cpu else opts.gpus)
    gpu_count = 0 if device.cpu else opts.gpus * opts.nodes
    flops = 6.0 * size.params * n_tokens
    chosen_mfu, source, overhead_s = _mfu(opts.mfu, device, gpu, opts.gpus, config, root)
    compute_s = flops / (workers * device.peak_tflops * 1e12 * chosen_mfu)
    hours = (compute_s + overhead_s) / 3600.0

    price = _pick(opts.price_per_gpu_hour, config, "price_per_gpu_hour")
    spot_price = _pick(opts.spot_price_per_gpu_hour, config, "spot_price_per_gpu_hour")
    rate = _pick(opts.preemptions_per_hour, config, "preemptions_per_hour")
    if spot and spot_price is None:
        fix = _fix(config, "spot_price_per_gpu_hour", "--spot-price USD")
        raise SpecError(f"no spot price for a spot estimate; {fix}")
    if price is None and not device.cpu:
        notes.append(f"no price, so no cost; {_fix(config, 'price_per_gpu_hour', '--price USD')}")
    spot_hours = preemptions = None
    if spot_price is not None or rate is not None:
        if rate is None:
            notes.append(
                "no preemption rate, so spot time assumes none; "
                + _fix(config, "preemptions_per_hour", "--preemptions-per-hour RATE")
            )
        preemptions = hours * (rate or 0.0)
        lost_s = opts.restart_s + opts.checkpoint_interval_s / 2
        spot_hours = hours + preemptions * lost_s / 3600.0

    stage = memory.sharding_stage(opts.strategy, opts.zero)
    layers_, hidden_ = opts.layers or size.layers, opts.hidden or size.hidden
    act = memory.activation_bytes(opts.batch_size, opts.seq_len, layers_, hidden_)
    verdict = memory.fit(
        size.params,
        gpu_name=device.name,
        capacity_gb=device.memory_gb,
        devices=workers,
        stage=stage,
        offload=opts.offload,
        activations=act,
        batch_size=opts.batch_size,
    )
    suggestion = verdict.suggestion
    if device.cpu and not verdict.fits:
        suggestion = (
            f"needs ~{verdict.per_gpu_gb:.0f} GB, this machine has {device.memory_gb:.0f} GB "
            "of RAM: use a GPU queue or a smaller model"
        )
    return Estimate(
        hours=hours,
        cost_usd=None if price is None else hours * gpu_count * price,
        spot_hours=spot_hours,
        spot_cost_usd=(
            None
            if spot_price is None or spot_hours is None
            else spot_hours * gpu_count * spot_price
        ),
        mfu=chosen_mfu,
        mfu_source=source,
        memory_per_gpu_gb=verdict.per_gpu_gb,
        fits=verdict.fits,
        suggestion=suggestion,
        flops=flops,
        gpu=device.name,
        gpus=0 if device.cpu else opts.gpus,
        nodes=opts.nodes,
        strategy=opts.strategy,
        zero=opts.zero,
        peak_tflops=device.peak_tflops,
        price_per_gpu_hour=price,
        spot_price_per_gpu_hour=spot_price,
        preemptions_expected=preemptions,
        params=size.params,
        tokens=n_tokens,
        queue=config.name if config else None,
        offload=opts.offload,
        compute_hours=compute_s / 3600.0,
        overhead_s=overhead_s,
        memory_capacity_gb=device.memory_gb,
        model_state_gb=verdict.model_state_gb,
        activations_gb=verdict.activations_gb,
        preemptions_per_hour=rate,
        restart_s=opts.restart_s,
        checkpoint_interval_s=opts.checkpoint_interval_s,
        notes=tuple(notes),
    )


def _fix(config: QueueOptions | None, key: str, flag: str) -> str:
    if config is None:
        return f"pass {flag}, or --queue NAME with {key} set in queues.toml"
    return f"set {key} in [queues.{config.name}] of queues.toml or pass {flag}"


def _pick(given: float | None, config: QueueOptions | None, key: str) -> float | None:
    if given is not None:
        return given
    return getattr(config, key) if config is not None else None


def _mfu(
    given: float | None,
    device: Device,
    gpu: str | None,
    gpus: int,
    config: QueueOptions | None,
    root: Path,
) -> tuple[float, str, float]:
    """MFU, where it came from, and the per-job overhead seconds that go with it."""
    if given is not None:
        return given, "given", 0.0
    calibration = _calibration(device, gpu, gpus, config, root)
    if calibration is not None and config is not None:
        count = len(calibration.jobs)
        return (
            calibration.mfu,
            f"calibrated from {count} finished job{'s' if count > 1 else ''} "
            f"on queue {config.name}",
            calibration.overhead_s,
        )
    value, source = DEFAULT_MFU[device.family]
    return value, f"default for {device.name}: {source}", 0.0


def _calibration(
    device: Device, gpu: str | None, gpus: int, config: QueueOptions | None, root: Path
) -> Calibration | None:
    if config is None:
        return None
    if gpu is not None:
        # A queue's jobs say nothing about a different device than the one it runs on.
        try:
            own = resolve_device(None, gpus, config, root)
        except SpecError:
            return None
        if own.name != device.name:
            return None
    db = Store(store_path(root))
    try:
        return calibrate(db, config.name, cpu=device.cpu, peak_tflops=device.peak_tflops)
    finally:
        db.close()
