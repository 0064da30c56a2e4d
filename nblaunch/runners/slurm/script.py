"""The batch script and sbatch arguments of one nblaunch job.

Every value reaches Slurm either as one argv item of ``sbatch`` (no shell reads
it) or as a ``shlex``-quoted word of the script; the only text a shell reads as
shell is the queue's own ``setup`` line. The script is written for the job's
first attempt and serves every restart Slurm makes of it: attempt
``BASE + SLURM_RESTART_COUNT`` runs in its own folder, so a requeued job
becomes the next attempt and resumes from the job's newest checkpoint.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nblaunch.runners.slurm.options import SlurmOptions
from nblaunch.runtime.contract import Env, JobDir

#: what a Slurm job name may hold without surprising ``squeue`` readers
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class BatchJob:
    """What one sbatch call needs: the job, its first attempt, and its resources."""

    job_id: str
    name: str
    attempt: int
    job_dir: Path
    bundle: Path
    gpus: int
    nodes: int
    priority: int
    env: dict[str, str]

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], job_id: str, attempt: int, job_dir: Path, env: dict[str, str]
    ) -> BatchJob:
        return cls(
            job_id=job_id,
            name=spec["name"],
            attempt=attempt,
            job_dir=job_dir,
            bundle=JobDir(job_dir).bundle,
            gpus=int(spec["gpus"]),
            nodes=int(spec["nodes"]),
            priority=int(spec["priority"]),
            env=env,
        )


def comment(job_id: str, attempt: int) -> str:
    """The ``--comment`` that names the nblaunch job and first attempt of a Slurm job."""
    return f"nblaunch:{job_id}:{attempt}"


def first_attempt(text: str, job_id: str) -> int | None:
    """The first attempt a Slurm job's comment names, if it is one of ``job_id``'s."""
    head, _, attempt = text.rpartition(":")
    return int(attempt) if head == f"nblaunch:{job_id}" and attempt.isdigit() else None


def sbatch_args(job: BatchJob, options: SlurmOptions) -> list[str]:
    """Everything sbatch is told, one argv item per option."""
    name = _UNSAFE.sub("_", job.name)[:64] or "nblaunch"
    args = [
        f"--job-name={name}",
        f"--comment={comment(job.job_id, job.attempt)}",
        f"--chdir={job.job_dir}",
        f"--output={_pattern(job.job_dir)}/slurm-%j.out",
        f"--error={_pattern(job.job_dir)}/slurm-%j.err",
        "--open-mode=append",
        "--requeue",
        # One node: the batch shell is the runtime. Several: signal the srun step's tasks,
        # since srun answers a SIGTERM of its own by killing them.
        f"--signal={'B:' if job.nodes == 1 else ''}TERM@{options.signal_grace_s}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
    ]
    if job.gpus:
        kind = f"{options.gpu_type}:" if options.gpu_type else ""
        args.append(f"--gres=gpu:{kind}{job.gpus}")
        if options.cpus_per_gpu:
            args.append(f"--cpus-per-gpu={options.cpus_per_gpu}")
        if options.mem_per_gpu:
            args.append(f"--mem-per-gpu={options.mem_per_gpu}")
    for key in ("partition", "account", "qos"):
        value = getattr(options, key)
        if value:
            args.append(f"--{key}={value}")
    if options.time_limit:
        args.append(f"--time={math.ceil(options.time_limit / 60)}")
    args += options.priority_args(job.priority)
    return args + list(options.extra_sbatch_args)


def _pattern(folder: Path) -> str:
    """``folder`` as sbatch's file-name patterns read it (``%%`` is one ``%``)."""
    return str(folder).replace("%", "%%")


def batch_script(job: BatchJob, options: SlurmOptions) -> str:
    """The script Slurm runs on the job's first node, at every (re)start."""
    q = shlex.quote
    attempts = JobDir(job.job_dir).attempt(0).path.parent
    lines = [
        "#!/bin/bash",
        "# Written by nblaunch; every start of this Slurm job is one nblaunch attempt.",
        "set -eu",
        *(f"export {key}={q(value)}" for key, value in sorted(job.env.items())),
        # sbatch passes on the submitter's environment: a job that asked for no GPU sees none.
        *(["export CUDA_VISIBLE_DEVICES="] if job.gpus == 0 else []),
        f"attempt=$(( {job.attempt} + ${{SLURM_RESTART_COUNT:-0}} ))",
        f"run={q(str(attempts))}/$attempt",
        f"export {Env.ATTEMPT}=$attempt",
        'mkdir -p -m 700 "$run/logs"',
        # The attempt's own logs; Slurm's files keep what slurmstepd itself says.
        'exec >>"$run/logs/stdout.log" 2>>"$run/logs/stderr.log"',
        'echo "nblaunch: attempt $attempt, Slurm job $SLURM_JOB_ID'
        ' (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname)" >&2',
        'cd "$run"',
    ]
    if options.setup:
        # The queue's own shell line; activation scripts (conda, Lmod) read unset variables.
        lines += ["set +u", options.setup, "set -u"]
    command = [options.python, "-m", "nblaunch.runtime", str(job.bundle)]
    runtime = " ".join(q(word) for word in command) + ' "$run"'
    if job.nodes > 1:
        # Rendezvous on this, the first node; a port of the job's own.
        lines += [
            'export MASTER_ADDR="$(hostname)"',
            "export MASTER_PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))",
            f"exec srun --kill-on-bad-exit=1 --ntasks-per-node=1 {runtime}",
        ]
    else:
        # exec: the SIGTERM Slurm sends the batch shell reaches the runtime itself.
        lines.append(f"exec {runtime}")
    return "\n".join(lines) + "\n"
