"""The estimate's options as one argparse parser, shared by ``nblaunch estimate`` and magics.

argparse rather than click because IPython's ``magic_arguments`` is argparse
too: ``%launch_estimate`` can hand its line to :func:`parse_estimate_args`
and get the same flags, defaults and errors as the terminal.

Example
-------
>>> options = parse_estimate_args(["--params", "124M", "--tokens", "1B", "--gpu", "T4"])
>>> print(format_estimate(estimate_from_options(options)))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from nblaunch.errors import SpecError
from nblaunch.jobs.estimate import (
    DEFAULT_CHECKPOINT_INTERVAL_S,
    DEFAULT_RESTART_S,
    Estimate,
    estimate,
)
from nblaunch.jobs.gpus import CATALOG
from nblaunch.options import STRATEGIES, ZERO_STAGES

__all__ = ["estimate_from_options", "estimate_parser", "format_estimate", "parse_estimate_args"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line through NBLaunchError, like every other bad input, not argparse's usage dump.
        raise SpecError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def estimate_parser(prog: str = "nblaunch estimate") -> argparse.ArgumentParser:
    """The parser for the estimate's flags; ``prog`` names it in help and errors."""
    p = _Parser(
        prog=prog,
        description="Estimate training time, cost (on-demand and spot) and GPU memory fit.",
    )
    p.add_argument(
        "--params",
        required=True,
        metavar="N",
        help="model size: 124M, 7B, 1.3e9, or an HF model folder with config.json",
    )
    p.add_argument("--tokens", required=True, metavar="T", help="training tokens: 1B, 3e9 ...")
    p.add_argument(
        "--gpu",
        metavar="TYPE",
        help=f"one of {', '.join(CATALOG)} or CPU (default: the queue's gpu_type)",
    )
    p.add_argument("--gpus", type=int, default=1, metavar="G", help="GPUs per node (default 1)")
    p.add_argument("--nodes", type=int, default=1, metavar="M", help="nodes (default 1)")
    p.add_argument(
        "--strategy",
        default="ddp",
        choices=STRATEGIES,
        help="how model state is divided (default ddp; fsdp shards like ZeRO-3)",
    )
    p.add_argument("--zero", type=int, choices=ZERO_STAGES, metavar="K", help="ZeRO stage 0-3")
    p.add_argument("--offload", action="store_true", help="optimizer state offloaded to CPU")
    p.add_argument(
        "--queue",
        "-q",
        metavar="Q",
        help="queue for price, spot price, preemption rate and calibration",
    )
    p.add_argument("--epochs", type=float, default=1.0, help="passes over --tokens (default 1)")
    p.add_argument("--batch-size", type=int, metavar="B", help="per-GPU micro-batch (activations)")
    p.add_argument("--seq-len", type=int, metavar="S", help="sequence length (activations)")
    p.add_argument("--layers", type=int, metavar="L", help="layers (default: from the HF config)")
    p.add_argument(
        "--hidden", type=int, metavar="H", help="hidden size (default: from the HF config)"
    )
    p.add_argument("--spot", action="store_true", help="spot figures are required")
    p.add_argument("--price", type=float, metavar="USD", help="USD per GPU-hour on demand")
    p.add_argument("--spot-price", type=float, metavar="USD", help="USD per GPU-hour on spot")
    p.add_argument(
        "--preemptions-per-hour", type=float, metavar="RATE", help="spot preemptions per hour"
    )
    p.add_argument(
        "--restart-minutes",
        type=float,
        default=DEFAULT_RESTART_S / 60,
        help="time to come back after a preemption (default %(default)g)",
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=DEFAULT_CHECKPOINT_INTERVAL_S / 60,
        help="checkpoint interval; half is lost per preemption (default %(default)g)",
    )
    p.add_argument("--mfu", type=float, help="use this MFU (0-1) instead of calibrated or default")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


_DESTS = (
    "gpu",
    "gpus",
    "nodes",
    "strategy",
    "zero",
    "offload",
    "queue",
    "epochs",
    "batch_size",
    "seq_len",
    "layers",
    "hidden",
    "spot",
    "price",
    "spot_price",
    "preemptions_per_hour",
    "restart_minutes",
    "checkpoint_minutes",
    "mfu",
)


def parse_estimate_args(argv: Sequence[str], prog: str = "nblaunch estimate") -> dict[str, Any]:
    """Flags → option values (``json`` included); bad flags raise ``SpecError``."""
    return vars(estimate_parser(prog).parse_args(_keep_negative_counts(argv)))


def _keep_negative_counts(argv: Sequence[str]) -> list[str]:
    # argparse takes "--tokens -1B" for a flag missing its value; glue the value on so
    # the count check can say what is wrong with it.
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if arg in ("--params", "--tokens") and re.match(r"-[\d.]", nxt):
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def estimate_from_options(
    options: Mapping[str, Any], namespace: Mapping[str, Any] | None = None
) -> Estimate:
    """Run :func:`estimate` on parsed option values (see :func:`estimate_kwargs`)."""
    return estimate(**estimate_kwargs(options, namespace))


def estimate_kwargs(
    options: Mapping[str, Any], namespace: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`estimate`'s arguments from parsed option values; the one place flags map
    to arguments (the CLI, ``%launch_estimate`` and its widget all use it).

    Parameters
    ----------
    options
        What :func:`parse_estimate_args` returns (extra keys such as ``json``
        are ignored; missing ones take the parser's defaults).
    namespace
        Names a magic can resolve: ``--params model`` uses the object
        ``namespace["model"]`` (a model or config), ``--tokens ds`` a dataset.
    """
    parser = estimate_parser()
    values = {**{k: parser.get_default(k) for k in _DESTS}, **options}
    params: Any = values["params"]
    tokens: Any = values["tokens"]
    if namespace is not None:
        if isinstance(params, str) and params.isidentifier() and params in namespace:
            params = namespace[params]
        if isinstance(tokens, str) and tokens.isidentifier() and tokens in namespace:
            tokens = namespace[tokens]
    return dict(
        params=params,
        tokens=tokens,
        gpu=values["gpu"],
        gpus=values["gpus"],
        nodes=values["nodes"],
        strategy=values["strategy"],
        zero=values["zero"],
        offload=values["offload"],
        queue=values["queue"],
        batch_size=values["batch_size"],
        seq_len=values["seq_len"],
        layers=values["layers"],
        hidden=values["hidden"],
        spot=values["spot"],
        epochs=values["epochs"],
        price_per_gpu_hour=values["price"],
        spot_price_per_gpu_hour=values["spot_price"],
        preemptions_per_hour=values["preemptions_per_hour"],
        restart_s=values["restart_minutes"] * 60,
        checkpoint_interval_s=values["checkpoint_minutes"] * 60,
        mfu=values["mfu"],
    )


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _count(n: float) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f}"


def format_estimate(est: Estimate) -> str:
    """The estimate as a few lines of text, for a terminal or a notebook."""
    device = "CPU" if est.gpu == "CPU" else f"{est.gpus * est.nodes} × {est.gpu}"
    lines = [
        f"{_count(est.params)} params × {_count(est.tokens)} tokens = {est.flops:.2e} FLOPs "
        f"on {device} ({est.peak_tflops:.4g} TFLOP/s peak each)",
        f"MFU        {est.mfu:.0%} ({est.mfu_source})",
    ]
    cost = "cost unknown" if est.cost_usd is None else f"${est.cost_usd:,.2f}"
    lines.append(f"on-demand  {_duration(est.hours):>10}   {cost}")
    if est.spot_hours is not None:
        spot_cost = "cost unknown" if est.spot_cost_usd is None else f"${est.spot_cost_usd:,.2f}"
        lines.append(
            f"spot       {_duration(est.spot_hours):>10}   {spot_cost} "
            f"(~{est.preemptions_expected or 0:.2g} preemptions)"
        )
    if est.overhead_s:
        lines.append(f"overhead   {_duration(est.overhead_s / 3600):>10}   per job, measured")
    unit = "of RAM" if est.gpu == "CPU" else "per GPU"
    verdict = "fits" if est.fits else "does NOT fit"
    lines.append(
        f"memory     {est.memory_per_gpu_gb:.1f} GB {unit} "
        f"of {est.memory_capacity_gb:.0f} GB: {verdict}"
    )
    if est.suggestion:
        lines.append(f"           {est.suggestion}")
    lines.extend(f"note: {note}" for note in est.notes)
    return "\n".join(lines)
