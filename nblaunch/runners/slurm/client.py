"""Slurm's own commands, each under a time limit.

Without slurmdbd there is no ``sacct``: a job is read from ``squeue --json``
(all jobs slurmctld still holds, one call per pass) and, for one that has left
it, ``scontrol show job -o`` (kept ``MinJobAge`` seconds after it ends). A
client waits for slurmctld for seconds when it is down, so every call has a
timeout and fails with one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from nblaunch.errors import EngineError

#: ``Key=Value`` pairs of ``scontrol -o``; a value runs up to the next `` Key=``
_FIELD = re.compile(r"(\S+?)=(.*?)(?= \S+?=|$)")


@dataclass(frozen=True)
class SlurmJob:
    """What nblaunch reads of one Slurm job."""

    id: str
    state: str
    reason: str
    restarts: int
    #: ``scontrol``'s ``code:signal`` as (exit code, signal); None when unknown
    exit: tuple[int, int] | None
    comment: str = ""


class SlurmClient:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._listing: dict[str, SlurmJob] = {}
        self._listed_at = -1.0
        #: why the last listing failed: every poll of the same pass fails at once with it
        self._failure: EngineError | None = None

    def call(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except FileNotFoundError:
            raise EngineError(
                f"{argv[0]} is not installed here; install Slurm's client commands "
                "(Debian: apt-get install slurm-client) on the machine that submits"
            ) from None
        except subprocess.TimeoutExpired:
            raise EngineError(
                f"{argv[0]} did not answer within {self.timeout_s:g}s; is slurmctld up? "
                "(raise client_timeout_s in queues.toml for a slow controller)"
            ) from None
        if check and proc.returncode != 0:
            raise EngineError(
                f"Slurm refused `{' '.join(argv[:2])}`: {_one_line(proc.stderr)} (check the "
                "queue's Slurm settings in queues.toml: partition, account, qos, "
                "extra_sbatch_args)"
            )
        return proc

    def sbatch(self, args: list[str], script: str) -> str:
        """Submit; the new job's id."""
        out = self.call(["sbatch", "--parsable", *args, script]).stdout
        return out.strip().split(";")[0]

    def jobs(self, max_age_s: float) -> dict[str, SlurmJob]:
        """Every job slurmctld holds, read at most once per ``max_age_s``."""
        now = time.monotonic()
        if now - self._listed_at >= max_age_s:
            self._listed_at = now
            try:
                data = json.loads(self.call(["squeue", "--json"]).stdout)
            except EngineError as exc:
                self._failure = exc
                raise
            self._failure = None
            self._listing = {str(j["job_id"]): _from_squeue(j) for j in data.get("jobs", [])}
        if self._failure is not None:
            raise self._failure
        return self._listing

    def job(self, job_id: str, max_age_s: float = 1.0) -> SlurmJob | None:
        """One job: from the listing, else ``scontrol``; None once Slurm forgot it."""
        found = self.jobs(max_age_s).get(job_id)
        if found is not None:
            return found
        proc = self.call(["scontrol", "show", "job", "-o", job_id], check=False)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return None
            raise EngineError(
                f"`scontrol show job {job_id}` failed: {_one_line(proc.stderr)} "
                "(is slurmctld up? `scontrol ping` says)"
            )
        return _from_scontrol(proc.stdout)

    def find(self, comment: str) -> SlurmJob | None:
        """The job carrying ``comment``, if slurmctld still holds one."""
        self._listed_at = -1.0
        return next((j for j in self.jobs(0).values() if j.comment == comment), None)

    def forget(self) -> None:
        """Read the listing afresh next time (after a change this process made)."""
        self._listed_at = -1.0

    def cancel(self, job_id: str) -> None:
        """``scancel``: SIGTERM to every process of the job, SIGKILL after KillWait."""
        self.call(["scancel", job_id], check=False)
        self.forget()

    def signal(self, job_id: str, name: str, *, batch: bool) -> None:
        """Send signal ``name`` to the job's steps, and to its batch shell if ``batch``."""
        self.call(["scancel", *(["--full"] if batch else []), "-s", name, job_id], check=False)


def _from_squeue(j: dict[str, Any]) -> SlurmJob:
    status = j.get("exit_code")
    exit = None
    if isinstance(status, int):  # 22.05: a raw wait status
        exit = (status >> 8, status & 0x7F)
    state = j.get("job_state", "")
    if isinstance(state, list):  # newer releases: a list of flags
        state = state[0] if state else ""
    return SlurmJob(
        id=str(j["job_id"]),
        state=str(state),
        reason=str(j.get("state_reason", "")),
        restarts=int(j.get("restart_cnt", 0) or 0),
        exit=exit,
        comment=str(j.get("comment", "") or ""),
    )


def _from_scontrol(text: str) -> SlurmJob:
    fields = dict(_FIELD.findall(text.strip()))
    code, _, sig = fields.get("ExitCode", "").partition(":")
    exit = (int(code), int(sig)) if code.isdigit() and sig.isdigit() else None
    return SlurmJob(
        id=fields.get("JobId", ""),
        state=fields.get("JobState", ""),
        reason=fields.get("Reason", ""),
        restarts=int(fields.get("Restarts", "0") or 0),
        exit=exit,
        comment=fields.get("Comment", "") if fields.get("Comment") != "(null)" else "",
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
