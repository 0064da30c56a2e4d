"""The runner interface: where a claimed job runs, and the facts of its backend.

A backend is one package under ``nblaunch/runners/`` (or an installed plug-in)
holding a ``Runner`` subclass. The class owns everything that differs between
backends: its queue options (``Options``, a pydantic model of the keys a
``[queues.NAME]`` table may set), whether a job can ever fit, which devices an
attempt gets, the environment the attempt runs with, where its logs are, and
submit / poll / cancel / preempt. The agent, the API and the estimator only
call these methods; none of them tests for a concrete runner.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from nblaunch.errors import CapacityError, SpecError
from nblaunch.options import parse_duration
from nblaunch.retry import RetryPolicy
from nblaunch.runtime.contract import DEFAULT_KERNEL_START_TIMEOUT_S, Env, Outcome, RunDir

__all__ = [
    "AttemptEnd",
    "ClusterOptions",
    "ClusterRunner",
    "Launch",
    "Pending",
    "QueueOptions",
    "Runner",
    "Slots",
    "job_env",
]


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except SpecError as exc:
            raise ValueError(str(exc)) from None
    return value


#: seconds, from a number or ``90s`` / ``30m`` / ``2h``
Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class QueueOptions(BaseModel):
    """Keys every queue accepts, whatever its runner; a runner's ``Options`` adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    runner: str = "local"
    gpus: int | None = Field(default=None, ge=0)
    gpu_type: str | None = None
    price_per_gpu_hour: float | None = Field(default=None, ge=0)
    spot_price_per_gpu_hour: float | None = Field(default=None, ge=0)
    preemptions_per_hour: float | None = Field(default=None, ge=0)
    cancel_grace_s: float = Field(default=30.0, ge=0)
    retry: RetryPolicy = RetryPolicy()
    #: an attempt running longer fails with reason ``timeout`` (jobs may set their own)
    timeout_s: Duration | None = None
    #: a kernel that has not answered by then is given up as ``lost`` (and retried)
    kernel_start_timeout_s: Duration = DEFAULT_KERNEL_START_TIMEOUT_S
    #: a waiting job preempts running jobs of lower priority when it cannot fit
    preempt_lower_priority: bool = True
    #: ...but never one that has run for less than this
    min_runtime_s: float = Field(default=60.0, ge=0)
    workspace_limit_mb: float = Field(default=100.0, gt=0)
    #: autoscaling (``desired_workers`` in ``nblaunch queues --json``): the fewest workers
    #: to keep, the most to ask for (None: no cap), and the GPUs one worker has (None:
    #: what one job may use here, ``Runner.gpu_slots()``, else 1)
    min_workers: int = Field(default=0, ge=0)
    max_workers: int | None = Field(default=None, ge=0)
    gpus_per_worker: int | None = Field(default=None, ge=1)

    @field_validator("max_workers")
    @classmethod
    def _check_workers(cls, most: int | None, info: ValidationInfo) -> int | None:
        fewest = info.data.get("min_workers")
        if most is not None and isinstance(fewest, int) and fewest > most:
            raise PydanticCustomError(
                "workers_range",
                "min_workers ({fewest}) is more than max_workers ({most}); "
                "lower min_workers or raise max_workers",
                {"fewest": fewest, "most": most},
            )
        return most

    def price(self) -> float | None:
        """USD per GPU-hour this queue's jobs pay: on-demand when set, else its spot price."""
        if self.price_per_gpu_hour is not None:
            return self.price_per_gpu_hour
        return self.spot_price_per_gpu_hour


@dataclass(frozen=True)
class Slots:
    """What a queue can run at once.

    ``gpu_ids`` are the device ids attempts are given, as ``CUDA_VISIBLE_DEVICES``
    spells them (indexes or UUIDs); queues whose runners name the same
    ``device_pool`` share those devices, so two queues never hand out one.
    """

    gpu_ids: tuple[str, ...]
    cpu_slots: int
    device_pool: str | None = None
    #: the backend's own scheduler decides (Slurm, Kubernetes): every waiting job is
    #: handed over at once, in priority order, and the engine assigns its devices
    engine: bool = False


@dataclass(frozen=True)
class Launch:
    """What a runner needs to start one attempt."""

    job_id: str
    attempt: int
    bundle: Path
    run: RunDir
    checkpoint_dir: Path
    gpu_ids: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: the handle of the job's previous attempt, if any (an engine that requeued
    #: the job itself may still hold it)
    previous: dict[str, Any] | None = None


def job_env(
    root: Path,
    job_id: str,
    attempt: int,
    checkpoints: Path,
    options: QueueOptions,
    prior_gpu_hours: float,
) -> dict[str, str]:
    """What the agent tells an attempt's runtime about the job (``Launch.env``)."""
    env = {
        Env.HOME: str(root),
        Env.JOB_ID: job_id,
        Env.ATTEMPT: str(attempt),
        Env.CHECKPOINT_DIR: str(checkpoints),
        Env.KERNEL_START_TIMEOUT_S: repr(options.kernel_start_timeout_s),
        # The kernel writes the job's cost so far into the wandb run summary at the end.
        Env.PRIOR_GPU_HOURS: repr(prior_gpu_hours),
    }
    price = options.price()
    if price is not None:
        env[Env.PRICE_PER_GPU_HOUR] = repr(price)
    return env


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, as the runner saw it."""

    outcome: Outcome
    error: dict[str, Any] | None = None
    exit_code: int | None = None
    #: the engine requeued the job itself and will start it again unless told not to
    engine_kept: bool = False


@dataclass(frozen=True)
class Pending:
    """The engine holds the attempt but has not started it, and says why."""

    reason: str


UNLIMITED = 1 << 30


class Runner(ABC):
    """Start, watch, stop and read the logs of attempts on one kind of backend.

    Constructing a runner has no side effects (the API builds one to check a
    job's capacity); the agent calls :meth:`start` before its first submit.
    """

    name: ClassVar[str]
    Options: ClassVar[type[QueueOptions]] = QueueOptions
    #: attempts run on the machine that submits them (estimates read its devices)
    runs_here: ClassVar[bool] = False
    #: the engine kills a preempted attempt that outlives its own grace period (the
    #: agent kills it otherwise)
    ends_preempted_itself: ClassVar[bool] = False

    def __init__(self, options: QueueOptions) -> None:
        self.options = options

    def start(self) -> None:  # noqa: B027 - most backends need no preparation
        """Prepare to submit (the agent calls this once); nothing by default."""

    def storage(self, home: Path) -> Path:
        """The folder holding this queue's job folders and workspace objects: the
        home, unless attempts run where only a shared folder is visible."""
        return home

    def gpu_slots(self) -> int | None:
        """GPUs the queue can give one job; None when the backend does not say."""
        return self.options.gpus

    def gpus_per_worker(self) -> int:
        """GPUs one worker of this queue has, for ``desired_workers``: the queue's
        ``gpus_per_worker``, else what one job may use here (``gpu_slots()``, per node
        on a cluster), else 1 (a queue of CPU-only workers)."""
        return self.options.gpus_per_worker or self.gpu_slots() or 1

    def check_capacity(self, gpus: int, nodes: int) -> None:
        """Raise ``CapacityError`` (one line, with the fix) when a job of ``gpus``
        per node on ``nodes`` nodes can never run on this queue."""
        slots = self.gpu_slots()
        if slots is not None and gpus > slots:
            name = self.options.name
            raise CapacityError(
                f"queue {name!r} has {slots} GPU(s) per node; the job asks for {gpus} "
                f"(lower --gpus to {slots}, or set gpus in [queues.{name}] of queues.toml)"
            )

    def check_ready(self) -> None:  # noqa: B027 - most backends need nothing more
        """Raise an ``NBLaunchError`` (one line, with the fix) when the queue cannot take
        jobs at all now (its engine's credentials are missing); at submit, before
        anything is written."""

    def slots(self) -> Slots:
        """Devices and job slots the agent may hand out for this queue."""
        return Slots(tuple(str(i) for i in range(self.options.gpus or 0)), UNLIMITED)

    def attempt_env(self, launch: Launch) -> dict[str, str]:
        """Variables the attempt's process gets on top of the job's own: its devices,
        numbered as NVML and ``nvidia-smi`` number them (PCI bus order) unless the
        machine chose another order."""
        order = os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        return {"CUDA_VISIBLE_DEVICES": ",".join(launch.gpu_ids), "CUDA_DEVICE_ORDER": order}

    def kernel_started(self, run: RunDir) -> bool:
        """Whether a kernel of the attempt has come up (its start-up hooks ran). A
        runner whose attempts run where this machine cannot see their folder says
        yes unless it knows better (its engine's own start-up timeout holds)."""
        return run.kernel_ready.exists() if self.runs_here else True

    def log_files(self, run: RunDir) -> list[Path]:
        """Files holding an attempt's output, stdout first."""
        return run.log_files()

    @abstractmethod
    def submit(self, launch: Launch) -> dict[str, Any]:
        """Start the attempt; return a JSON-serializable handle for ``poll``/``cancel``
        (its ``external_id``, when present, is the engine's name for the attempt)."""

    def recover(self, run: RunDir, job_id: str, attempt: int) -> dict[str, Any] | None:
        """The handle of an attempt whose agent died between starting it and recording
        its handle, if the attempt did start; None when it did not (or cannot tell)."""
        return None

    @abstractmethod
    def poll(self, handle: dict[str, Any], run: RunDir) -> AttemptEnd | Pending | None:
        """``None`` while the attempt runs, ``Pending`` while its engine has not
        started it, else how it ended."""

    @abstractmethod
    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        """Stop the attempt: ask politely, then force after ``grace_s`` seconds."""

    def manifests(self, launch: Launch) -> list[dict[str, Any]]:
        """What starting ``launch`` would create on the engine, as documents (``--dry-run``
        prints them as YAML); nothing for a runner that creates nothing outside this
        machine. Reads the bundle only: no engine is asked."""
        return []

    def preempt(self, handle: dict[str, Any]) -> None:
        """Send what a spot reclaim sends: SIGTERM to the attempt's main process."""
        raise NotImplementedError(f"the {self.name} runner cannot preempt jobs")


class ClusterOptions(QueueOptions):
    """Keys of a queue whose engine runs jobs on a cluster's nodes (Slurm, Kubernetes)."""

    #: GPUs one node has (the most a job may ask per node)
    gpus_per_node: int | None = Field(default=None, ge=0)
    #: the most nodes one job may use
    nodes: int | None = Field(default=None, ge=1)


class ClusterRunner(Runner):
    """A runner whose engine schedules a cluster's nodes: every waiting job is handed
    over at once, and the engine assigns its nodes and devices."""

    options: ClusterOptions

    def gpu_slots(self) -> int | None:
        per_node = self.options.gpus_per_node
        return per_node if per_node is not None else self.options.gpus

    def check_capacity(self, gpus: int, nodes: int) -> None:
        most = self.options.nodes
        if most is not None and nodes > most:
            name = self.options.name
            raise CapacityError(
                f"queue {name!r} runs jobs on at most {most} node(s); the job asks for {nodes} "
                f"(lower --nodes to {most}, or set nodes in [queues.{name}] of queues.toml)"
            )
        super().check_capacity(gpus, nodes)

    def slots(self) -> Slots:
        return Slots((), UNLIMITED, engine=True)
