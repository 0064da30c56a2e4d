"""A Slurm queue's options: where its jobs go, what each asks of Slurm, how priorities map."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nblaunch.options import check_levels, priority_level
from nblaunch.runners.base import ClusterOptions, Duration

#: sbatch options nblaunch sets itself (or that would change how it reads the job); a
#: queue's ``extra_sbatch_args`` may not repeat them, under a short name or abbreviated
RESERVED = {
    "--chdir": "-D", "--comment": None, "--error": "-e", "--job-name": "-J",
    "--open-mode": None, "--output": "-o", "--parsable": None, "--requeue": None,
    "--no-requeue": None, "--signal": None, "--wrap": None, "--nodes": "-N", "--gres": None,
    "--gpus": "-G", "--gpus-per-node": None, "--ntasks-per-node": None, "--nice": None,
    "--export": None, "--wait": "-W", "--array": "-a", "--test-only": None,
}  # fmt: skip


class SlurmOptions(ClusterOptions):
    """``[queues.NAME]`` with ``runner = "slurm"``."""

    runner: Literal["slurm"] = "slurm"
    #: a folder the submitting machine and every compute node see at this path
    run_root: Path
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: each allocation's wall-clock limit (``--time``); a job that reaches it resumes in the next
    time_limit: Duration | None = None
    cpus_per_gpu: int | None = Field(default=None, ge=1)
    #: e.g. ``"16G"`` (sbatch's own units)
    mem_per_gpu: str | None = Field(default=None, pattern=r"^[0-9]+[KMGT]?$")
    extra_sbatch_args: list[str] = []
    #: SIGTERM reaches the job this long before its time limit, so it can checkpoint
    signal_grace_s: int = Field(default=120, ge=1, le=65535)
    #: ``--nice`` per priority level (Slurm runs lower values first)
    priority_nice: dict[str, int] = {"critical": 0, "high": 100, "normal": 200, "low": 300}
    #: a QOS per priority level; a level listed here gets that QOS instead of a nice value
    priority_qos: dict[str, str] = {}
    #: one shell line run on the node before the job (``module load …``, a venv activation)
    setup: str | None = None
    #: the interpreter that runs the job on the node (this one by default: a shared install)
    python: str = Field(default_factory=lambda: sys.executable)
    #: the longest any Slurm command may take before the call is given up
    client_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("extra_sbatch_args")
    @classmethod
    def _check_extra(cls, args: list[str]) -> list[str]:
        for arg in args:
            if not arg.startswith("-") or any(c in arg for c in "\n\r\0"):
                raise ValueError(
                    f"{arg!r} is not one sbatch option; write each as its own string "
                    'starting with "-", e.g. ["--constraint=a100", "--exclusive"]'
                )
            name = arg.split("=", 1)[0]
            clash = next((o for o, short in RESERVED.items() if name == short), None)
            if name.startswith("--") and len(name) > 3:  # sbatch takes unambiguous prefixes
                clash = next((o for o in RESERVED if o.startswith(name)), clash)
            elif len(name) > 2 and not name.startswith("--"):  # -oFILE is -o FILE
                clash = next((o for o, short in RESERVED.items() if name[:2] == short), clash)
            if clash is not None:
                shown = name if name == clash else f"{name} ({clash})"
                raise ValueError(
                    f"{shown} is set by nblaunch; use the queue's own keys instead "
                    f"(reserved: {', '.join(RESERVED)})"
                )
        return args

    @field_validator("priority_nice", "priority_qos")
    @classmethod
    def _check_levels(cls, mapping: dict[str, object]) -> dict[str, object]:
        return check_levels(mapping)

    @field_validator("priority_nice")
    @classmethod
    def _check_nice(cls, mapping: dict[str, int]) -> dict[str, int]:
        for level, nice in mapping.items():
            if not 0 <= nice <= 2147483645:
                raise ValueError(f"nice {nice} for {level!r} must be between 0 and 2147483645")
        return mapping

    @model_validator(mode="after")
    def _check_root(self) -> SlurmOptions:
        if not self.run_root.is_absolute():
            raise ValueError(f"run_root {str(self.run_root)!r} must be an absolute path")
        return self

    def priority_args(self, priority: int) -> list[str]:
        """``--nice`` or ``--qos`` for a job of ``priority``: the setting of the highest
        level at or below it (the lowest level for anything lower still)."""
        level = priority_level(priority)
        if level in self.priority_qos:
            return [f"--qos={self.priority_qos[level]}"]
        if level in self.priority_nice:
            return [f"--nice={self.priority_nice[level]}"]
        return []
