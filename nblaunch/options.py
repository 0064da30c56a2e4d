"""The job options, declared once: the CLI's click options and the magics' arguments
are both generated from :data:`JOB_OPTIONS`, and the vocabularies they accept
(strategies, priorities) live here alone.

Parameters are not in the model: ``nblaunch submit -p NAME VALUE`` keeps
papermill's CLI form, while ``%%launch -p NAME=VALUE`` reads Python literals
from a notebook line; each face parses its own form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from nblaunch.errors import SpecError

__all__ = [
    "JOB_OPTIONS",
    "PRIORITIES",
    "STRATEGIES",
    "JobOption",
    "Strategy",
    "click_job_options",
    "job_fields",
    "magic_job_arguments",
    "parse_duration",
    "parse_priority",
    "priority_level",
    "check_levels",
    "priority_name",
]

Strategy = Literal["none", "ddp", "fsdp", "deepspeed"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PRIORITIES: dict[str, int] = {"low": -10, "normal": 0, "high": 10, "critical": 100}
ZERO_STAGES = (0, 1, 2, 3)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobOption:
    """One option every job-submitting face accepts."""

    flag: str
    help: str
    type: type | None = None  # None: a flag that is on or off
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None
    metavar: str | None = None
    short: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


JOB_OPTIONS: tuple[JobOption, ...] = (
    JobOption("--queue", "queue to submit to", str, "local", metavar="Q", short="-q"),
    JobOption("--gpus", "GPUs per node", int, 0, minimum=0, metavar="N"),
    JobOption("--nodes", "nodes", int, 1, minimum=1, metavar="M"),
    JobOption("--strategy", "multi-GPU strategy the job runs with", str, "none", STRATEGIES),
    JobOption(
        "--zero",
        "DeepSpeed ZeRO stage (with --strategy deepspeed; default 2)",
        int,
        choices=ZERO_STAGES,
        metavar="K",
    ),
    JobOption("--offload", "DeepSpeed: offload optimizer state (ZeRO-3: also parameters) to CPU"),
    JobOption("--priority", "low, normal, high, critical or an integer", str, "normal"),
    JobOption("--name", "job name shown in listings (default: the notebook's name)", str),
    JobOption(
        "--retry-on",
        "the job's own failure classes to retry, comma-separated: failed, oom, timeout "
        "(preempted and lost are always retried, under their caps; default: the queue's)",
        str,
        metavar="CLASSES",
    ),
    JobOption(
        "--max-retries",
        "retries of the job's own failures listed in --retry-on (failed, oom, timeout; "
        "default: the queue's)",
        int,
        minimum=0,
        metavar="N",
    ),
    JobOption(
        "--max-preemptions",
        "times a preempted job is requeued to resume (default: the queue's)",
        int,
        minimum=0,
        metavar="N",
    ),
    JobOption(
        "--max-lost",
        "retries after an attempt was lost: its process, node or kernel start "
        "(default: the queue's)",
        int,
        minimum=0,
        metavar="N",
    ),
    JobOption(
        "--backoff",
        "seconds before the first retry; each retry waits longer (default: the queue's)",
        float,
        metavar="S",
    ),
    JobOption(
        "--backoff-multiplier",
        "each retry waits this many times longer than the one before (default: the queue's)",
        float,
        metavar="X",
    ),
    JobOption(
        "--backoff-max",
        "the longest wait between retries, in seconds (default: the queue's)",
        float,
        metavar="S",
    ),
    JobOption(
        "--jitter",
        "each wait is cut by a random share of up to this fraction, 0 to 1 (default: the queue's)",
        float,
        metavar="F",
    ),
    JobOption(
        "--timeout",
        "an attempt running longer than this fails with reason timeout: seconds, or "
        "90s, 30m, 2h (default: the queue's)",
        str,
        metavar="DURATION",
    ),
    JobOption(
        "--workspace-limit",
        "largest workspace (the notebook's folder) to bundle, in MB (default: the queue's)",
        float,
        metavar="MB",
    ),
)


def click_job_options(func: F) -> F:
    """Decorate a click command with every job option."""
    import click

    for opt in reversed(JOB_OPTIONS):
        names = [opt.flag, *([opt.short] if opt.short else [])]
        if opt.type is None:
            func = click.option(*names, opt.dest, is_flag=True, help=opt.help + ".")(func)
            continue
        kind: Any = opt.type
        if opt.choices is not None and opt.type is int:
            kind = click.IntRange(min(opt.choices), max(opt.choices))
        elif opt.choices is not None:
            kind = click.Choice([str(c) for c in opt.choices])
        elif opt.minimum is not None:
            kind = click.IntRange(min=opt.minimum)
        func = click.option(
            *names,
            opt.dest,
            type=kind,
            default=opt.default,
            show_default=opt.default is not None,
            metavar=opt.metavar,
            help=opt.help + ".",
        )(func)
    return func


def magic_job_arguments(func: F) -> F:
    """Decorate a magic (under ``@magic_arguments()``) with every job option."""
    from IPython.core.magic_arguments import argument

    # magic_arguments lists arguments in reverse order of decoration.
    for opt in reversed(JOB_OPTIONS):
        names = [opt.flag, *([opt.short] if opt.short else [])]
        default = f" (default {opt.default})" if opt.default not in (None, False) else ""
        if opt.type is None:
            func = argument(*names, action="store_true", help=opt.help)(func)
        else:
            func = argument(
                *names,
                type=opt.type,
                default=opt.default,
                choices=opt.choices,
                metavar=opt.metavar,
                help=opt.help + default,
            )(func)
    return func


def job_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """``JobSpec`` fields from parsed job options (either face's); ``JobSpec`` checks
    how they go together."""
    zero, offload = values.get("zero"), bool(values.get("offload"))
    for opt in JOB_OPTIONS:
        low, value = opt.minimum, values.get(opt.dest)
        if low is not None and value is not None and value < low:
            raise SpecError(f"{opt.flag} {value} is below {low}")
    options: dict[str, Any] = {}
    if zero is not None:
        options["zero"] = int(zero)
    if offload:
        options["offload"] = True
    fields: dict[str, Any] = {
        "queue": values["queue"],
        "gpus": values["gpus"],
        "nodes": values["nodes"],
        "strategy": values["strategy"],
        "priority": parse_priority(values["priority"]),
        "retry": {
            "retry_on": values.get("retry_on"),
            "max_retries": values.get("max_retries"),
            "max_preemptions": values.get("max_preemptions"),
            "max_lost": values.get("max_lost"),
            "initial_s": values.get("backoff"),
            "multiplier": values.get("backoff_multiplier"),
            "max_s": values.get("backoff_max"),
            "jitter": values.get("jitter"),
        },
        "options": options,
    }
    if values.get("timeout") is not None:
        fields["timeout_s"] = parse_duration(values["timeout"], "--timeout")
    if values.get("workspace_limit") is not None:
        fields["workspace_limit_mb"] = float(values["workspace_limit"])
    return fields


def parse_priority(value: str | int) -> int:
    """``low`` / ``normal`` / ``high`` / ``critical`` or an integer; higher runs first."""
    problem = f"priority {value!r} is not valid; use low, normal, high, critical or an integer"
    if isinstance(value, bool):
        raise SpecError(problem)
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text in PRIORITIES:
        return PRIORITIES[text]
    try:
        return int(text)
    except ValueError:
        raise SpecError(problem) from None


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float, what: str = "duration") -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``2h`` or ``1d``; must be above zero."""
    text = str(value).strip().lower()
    unit = _UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise SpecError(f"{what} {value!r} is not a duration; use seconds or 90s, 30m, 2h, 1d")
    return seconds


def priority_level(priority: int) -> str:
    """The highest named level at or below ``priority`` (the lowest for anything lower):
    what an engine that knows only the named levels gives the job."""
    levels = sorted(PRIORITIES.items(), key=lambda item: item[1])
    return next((name for name, number in reversed(levels) if number <= priority), levels[0][0])


def check_levels(mapping: dict[str, Any]) -> dict[str, Any]:
    """A queue's per-level setting (priority level → engine value): every key a level."""
    unknown = sorted(set(mapping) - set(PRIORITIES))
    if unknown:
        raise ValueError(f"unknown priority level {unknown[0]!r}; levels: {', '.join(PRIORITIES)}")
    return mapping


def priority_name(value: int) -> str:
    for name, number in PRIORITIES.items():
        if number == value:
            return name
    return str(value)
