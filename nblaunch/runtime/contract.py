"""The runtime contract: what a job's folders hold and what its process is told.

This module is the ground floor of nblaunch. The store, the agent, the runners,
the runtime inside the job, the trainers and the faces read the folder layout,
the environment variable names, the ``result.json`` schema, the metric record
names and the cost rule from here, so none of them restates another's. It
imports only the standard library.

::

    $NBLAUNCH_HOME/jobs/<id>/           JobDir
        bundle/                         what travels: job.json, notebook.ipynb, ...
            workspace/                  the notebook's folder, as submitted
        checkpoints/                    shared by every attempt of the job
        attempts/<n>/                   RunDir, one per attempt
            workspace/                  the job's working directory (a copy)
            output.ipynb  result.json  metrics.jsonl
            logs/stdout.log  logs/stderr.log
            ranks/<r>/                  RankDir, one per rank of a multi-process job
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args

# -- file modes ----------------------------------------------------------------

#: Everything nblaunch writes is the user's alone: folders, files, and stored
#: workspace objects (read-only, so a job cannot write through a link).
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
READ_ONLY_FILE = 0o400


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each ``PRIVATE_DIR`` (existing ones kept)."""
    missing = []
    while not path.is_dir() and path.parent != path:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)


def open_private(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """A file descriptor on ``path``, created ``PRIVATE_FILE`` when it is new."""
    return os.open(path, flags | os.O_CREAT, PRIVATE_FILE)


def append_line(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` and a newline to ``path`` (private) in one ``write`` on an
    ``O_APPEND`` file, so lines from several processes never interleave."""
    fd = open_private(path)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def replace_private(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a reader never sees half of it), private."""
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


# -- environment -------------------------------------------------------------


#: seconds a kernel may take to answer before the attempt is given up as lost
#: (a queue's ``kernel_start_timeout_s``, passed in ``Env.KERNEL_START_TIMEOUT_S``)
DEFAULT_KERNEL_START_TIMEOUT_S = 120.0


class Env:
    """Names of the variables the agent, the runner and the runtime set for a job."""

    HOME = "NBLAUNCH_HOME"
    JOB_ID = "NBLAUNCH_JOB_ID"
    ATTEMPT = "NBLAUNCH_ATTEMPT"
    RUN_DIR = "NBLAUNCH_RUN_DIR"
    CHECKPOINT_DIR = "NBLAUNCH_CHECKPOINT_DIR"
    RESUME_FROM = "NBLAUNCH_RESUME_FROM"
    SUBMIT_DIR = "NBLAUNCH_SUBMIT_DIR"
    WORKSPACE = "NBLAUNCH_WORKSPACE"
    STRATEGY = "NBLAUNCH_STRATEGY"
    GPUS = "NBLAUNCH_GPUS"
    NODES = "NBLAUNCH_NODES"
    ZERO_STAGE = "NBLAUNCH_ZERO_STAGE"
    OFFLOAD = "NBLAUNCH_OFFLOAD"
    ATTEMPT_STARTED = "NBLAUNCH_ATTEMPT_STARTED"
    PRIOR_GPU_HOURS = "NBLAUNCH_PRIOR_GPU_HOURS"
    PRICE_PER_GPU_HOUR = "NBLAUNCH_PRICE_PER_GPU_HOUR"
    PREEMPT_MARKER = "NBLAUNCH_PREEMPT_MARKER"
    PREEMPT_DEADLINE_S = "NBLAUNCH_PREEMPT_DEADLINE_S"
    KERNEL_READY = "NBLAUNCH_KERNEL_READY"
    KERNEL_START_TIMEOUT_S = "NBLAUNCH_KERNEL_START_TIMEOUT_S"
    #: set where the attempt's folder is this node's own (a pod's, no shared filesystem):
    #: metrics, output notebook and result also go to stdout (``runtime.records``)
    LOG_RECORDS = "NBLAUNCH_LOG_RECORDS"
    #: where the runtime writes its result for the engine (a pod's termination message)
    TERMINATION_LOG = "NBLAUNCH_TERMINATION_LOG"


# -- folders -----------------------------------------------------------------

BUNDLE_SPEC = "job.json"
BUNDLE_NOTEBOOK = "notebook.ipynb"
BUNDLE_REQUIREMENTS = "requirements.txt"
BUNDLE_GIT = "git.json"
BUNDLE_WORKSPACE_MANIFEST = "workspace.json"
WORKSPACE = "workspace"
RESUME_MARKER = ".nblaunch-complete"
PREEMPT_MARKER = ".nblaunch-preempted"
#: touched by the kernel's start-up hooks: the kernel came up and answered
KERNEL_READY_MARKER = ".nblaunch-kernel-ready"


@dataclass(frozen=True)
class RankDir:
    """One rank's files in a multi-process attempt (``ranks/<r>/``)."""

    path: Path

    @property
    def stdout(self) -> Path:
        return self.path / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.path / "stderr.log"

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    @property
    def output(self) -> Path:
        return self.path / "output.ipynb"

    @property
    def preempt_marker(self) -> Path:
        return self.path / PREEMPT_MARKER


@dataclass(frozen=True)
class RunDir:
    """One attempt's folder."""

    path: Path

    @property
    def workspace(self) -> Path:
        """The job's working directory: its own copy of the submitted workspace."""
        return self.path / WORKSPACE

    @property
    def output(self) -> Path:
        return self.path / "output.ipynb"

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def stdout(self) -> Path:
        return self.logs / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.logs / "stderr.log"

    def log_files(self) -> list[Path]:
        """Where the runtime's output goes unless its runner keeps it elsewhere."""
        return [self.stdout, self.stderr]

    @property
    def preempt_marker(self) -> Path:
        return self.path / PREEMPT_MARKER

    @property
    def wandb_run(self) -> Path:
        """``{"id", "entity", "project", "offline"}`` of the W&B run the notebook logged
        into (written on its first ``log``): where ``nblaunch sync`` uploads it."""
        return self.path / "wandb-run.json"

    @property
    def runtime_process(self) -> Path:
        """``{"pid", "create_time"}`` of the attempt's runtime (``record_runtime``)."""
        return self.path / "runtime.json"

    def record_runtime(self, pid: int, create_time: float) -> None:
        """Say which process runs the attempt. The launcher writes it before the
        runtime gets its order, and the runtime again as it starts, so an agent
        that dies in between leaves an attempt the next one can find."""
        flags = os.O_WRONLY | os.O_TRUNC
        with os.fdopen(open_private(self.runtime_process, flags), "w") as fh:
            fh.write(json.dumps({"pid": pid, "create_time": create_time}))

    @property
    def kernel_ready(self) -> Path:
        """Exists once a kernel of the attempt (any rank's) has started."""
        return self.path / KERNEL_READY_MARKER

    def rank(self, rank: int) -> RankDir:
        return RankDir(self.path / "ranks" / str(rank))

    def rank_results(self) -> list[Path]:
        """Every rank's ``result.json``, in rank order."""
        found = (self.path / "ranks").glob("*/result.json")
        return sorted(found, key=lambda p: int(p.parent.name))


@dataclass(frozen=True)
class JobDir:
    """A job's folder under ``$NBLAUNCH_HOME/jobs``."""

    path: Path

    @property
    def bundle(self) -> Path:
        return self.path / "bundle"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def attempt(self, n: int) -> RunDir:
        return RunDir(self.path / "attempts" / str(n))

    @classmethod
    def of_run(cls, run_dir: Path) -> JobDir:
        """The job folder an attempt's run folder sits in."""
        return cls(run_dir.parent.parent)


# -- how an attempt ended ------------------------------------------------------


class Outcome(str, Enum):
    """How an attempt ended, as the runtime, its runner or the agent saw it."""

    SUCCEEDED = "succeeded"
    PREEMPTED = "preempted"
    CELL_ERROR = "cell_error"
    KERNEL_DIED = "kernel_died"
    OOM = "oom"
    TIMEOUT = "timeout"
    RUNTIME_ERROR = "runtime_error"
    RUNTIME_CRASHED = "runtime_crashed"
    RUNNER_ERROR = "runner_error"
    KERNEL_START_FAILED = "kernel_start_failed"
    LOST = "lost"
    AGENT_DIED = "agent_died"

    def __str__(self) -> str:
        return self.value

    @property
    def failure_class(self) -> str | None:
        """What retry policies act on: ``preempted`` and ``lost`` (the infrastructure's
        doing), ``oom``, ``timeout`` and ``failed`` (the job's); None for success."""
        if self is Outcome.SUCCEEDED:
            return None
        if self in (Outcome.LOST, Outcome.AGENT_DIED, Outcome.KERNEL_START_FAILED):
            return "lost"
        if self in (Outcome.PREEMPTED, Outcome.OOM, Outcome.TIMEOUT):
            return self.value
        return "failed"

    @property
    def state(self) -> str:
        """The attempt's end state: ``succeeded``, ``preempted``, ``lost`` or ``failed``."""
        klass = self.failure_class
        return "succeeded" if klass is None else klass if klass in INFRASTRUCTURE else "failed"

    @property
    def exit_code(self) -> int:
        """The runtime's exit status for this outcome (papermill's 138 for a dead kernel)."""
        return _EXIT_CODES.get(self, 1)


FailureClass = Literal["preempted", "lost", "failed", "oom", "timeout"]
FAILURE_CLASSES: tuple[FailureClass, ...] = get_args(FailureClass)
#: failure classes that are not the job's fault: always retried, under their own caps
INFRASTRUCTURE: tuple[FailureClass, ...] = ("preempted", "lost")
#: the runtime's exit status when the notebook itself failed (a cell raised): an engine
#: that restarts failed containers (a Kubernetes Job) must not run it again on its own
USER_ERROR_EXIT_CODE = 86
_EXIT_CODES = {
    Outcome.SUCCEEDED: 0,
    Outcome.PREEMPTED: 143,
    Outcome.KERNEL_DIED: 138,
    Outcome.CELL_ERROR: USER_ERROR_EXIT_CODE,
}


@dataclass(frozen=True)
class Result:
    """``result.json``: the runtime's account of one attempt (or one rank).

    ``error`` holds papermill's fields for a failed cell: ``ename``,
    ``evalue``, ``cell_index`` and ``traceback``.
    """

    outcome: Outcome
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def state(self) -> str:
        return self.outcome.state

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "outcome": self.outcome.value,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write(self, path: Path) -> None:
        """Write whole or not at all: a reader never sees half a result."""
        replace_private(path, self.to_json().encode())

    @classmethod
    def read(cls, path: Path) -> Result | None:
        """The result at ``path``; None when it is missing or unreadable."""
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """A result from ``to_dict``'s form; ``KeyError``/``ValueError`` when it is not one."""
        return cls(
            outcome=Outcome(data["outcome"]),
            error=data.get("error"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
        )


# -- metrics -------------------------------------------------------------------

#: one JSON line per ``log`` call: ``{"step": int | null, "time": float, "metrics": {...}}``
METRICS_FILE = "metrics.jsonl"
#: logged by training loops that know their length; the ETA and progress read it
MAX_STEPS_METRIC = "max_steps"
GPU_PREFIX = "gpu/"
GPU_UTILIZATION = "gpu/utilization"
GPU_MEMORY_GB = "gpu/memory_used_gb"
GPU_TEMPERATURE_C = "gpu/temperature_c"
GPU_POWER_W = "gpu/power_w"
GPU_METRICS = (GPU_UTILIZATION, GPU_MEMORY_GB, GPU_TEMPERATURE_C, GPU_POWER_W)
#: what training loops report so queues calibrate their estimates (jobs.calibration)
PERF_ACHIEVED_FLOPS = "perf/achieved_flops_per_s"
PERF_RUNTIME_S = "perf/train_runtime_s"
PERF_MODEL_PARAMS = "perf/model_params"
PERF_TRAIN_TOKENS = "perf/train_tokens"

# -- W&B Launch ------------------------------------------------------------------

#: the run summary key where an attempt W&B Launch ran reports its ``Result`` (the
#: runtime writes it as the attempt ends; the wandb runner reads it)
WANDB_RESULT_KEY = "nblaunch/result"
#: the key in that result naming the Launch queue item of the attempt that wrote it
#: (every attempt logs into the same run), from ``WANDB_LAUNCH_TRACE_ID``
WANDB_RESULT_ITEM = "launch_item"
WANDB_LAUNCH_ITEM = "WANDB_LAUNCH_TRACE_ID"

# -- devices -------------------------------------------------------------------

_DEVICE = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z/-]+)$")


def visible_devices(value: str | None) -> list[str] | None:
    """The devices a ``CUDA_VISIBLE_DEVICES`` value names, as CUDA reads it.

    Indexes (``1,3``) and UUIDs (``GPU-8f3e…``, ``MIG-…``) are kept as given;
    CUDA stops at the first entry it cannot read (``-1`` hides every device).
    ``None`` when the variable is unset (every device is visible).
    """
    if value is None:
        return None
    devices = []
    for entry in value.split(","):
        entry = entry.strip()
        if not _DEVICE.match(entry):
            break
        devices.append(entry)
    return devices


# -- distributed ---------------------------------------------------------------


@dataclass(frozen=True)
class DistributedEnv:
    """Rank, local rank, world size and rendezvous of this process.

    torchrun's variables win (they describe this very process); then Slurm's
    (``SLURM_PROCID`` …, master from the first host of ``SLURM_JOB_NODELIST``);
    then Kubernetes PyTorchJob / Indexed Job variables. With none set this is a
    single process of rank 0.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    node_rank: int = 0
    nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistributedEnv:
        e = os.environ if env is None else env
        port = int(e.get("MASTER_PORT", "29500"))
        if "RANK" in e and "WORLD_SIZE" in e:
            return cls(
                rank=int(e["RANK"]),
                local_rank=int(e.get("LOCAL_RANK", "0")),
                world_size=int(e["WORLD_SIZE"]),
                node_rank=int(e.get("GROUP_RANK", e.get("NODE_RANK", "0"))),
                nodes=int(e.get("GROUP_WORLD_SIZE") or e.get("NNODES") or e.get("PET_NNODES") or 1),
                master_addr=e.get("MASTER_ADDR", "127.0.0.1"),
                master_port=port,
                source="torchrun",
            )
        if "SLURM_PROCID" in e or "SLURM_NODEID" in e:
            nodelist = e.get("SLURM_JOB_NODELIST", e.get("SLURM_NODELIST", ""))
            return cls(
                rank=int(e.get("SLURM_PROCID", "0")),
                local_rank=int(e.get("SLURM_LOCALID", "0")),
                world_size=int(e.get("SLURM_NTASKS", "1")),
                node_rank=int(e.get("SLURM_NODEID", "0")),
                nodes=int(e.get("SLURM_JOB_NUM_NODES", e.get("SLURM_NNODES", "1"))),
                master_addr=e.get("MASTER_ADDR") or first_slurm_host(nodelist) or "127.0.0.1",
                master_port=port,
                source="slurm",
            )
        if "PET_NODE_RANK" in e or "JOB_COMPLETION_INDEX" in e:
            node_rank = int(e.get("PET_NODE_RANK", e.get("JOB_COMPLETION_INDEX", "0")))
            return cls(
                node_rank=node_rank,
                nodes=int(e.get("PET_NNODES", "1")),
                master_addr=e.get("MASTER_ADDR", "127.0.0.1"),
                master_port=port,
                source="kubernetes",
            )
        return cls()


def first_slurm_host(nodelist: str) -> str | None:
    """First host of a Slurm node list: ``gpu[03-05,07],cpu1`` → ``gpu03``."""
    if not nodelist:
        return None
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if match is None:
        return None
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


# -- cost ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """What a job has used: GPU-hours, and dollars when its queue has a price."""

    gpu_hours: float
    wall_hours: float
    price_per_gpu_hour: float | None
    running: bool = False

    @property
    def usd(self) -> float | None:
        if self.price_per_gpu_hour is None:
            return None
        return self.gpu_hours * self.price_per_gpu_hour


def job_cost(
    held: Iterable[tuple[float, float]],
    gpus: int,
    price_per_gpu_hour: float | None,
    *,
    prior_gpu_hours: float = 0.0,
    running: bool = False,
) -> Cost:
    """The cost of holding ``gpus`` GPUs (over all nodes) for each ``(start, end)`` span.

    ``prior_gpu_hours`` adds what earlier attempts used (the runtime knows only
    its own attempt's span). A job that asked for no GPU uses no GPU-hours.
    """
    seconds = sum(max(0.0, end - start) for start, end in held)
    return Cost(
        gpu_hours=prior_gpu_hours + seconds * gpus / 3600.0,
        wall_hours=seconds / 3600.0,
        price_per_gpu_hour=price_per_gpu_hour,
        running=running,
    )
