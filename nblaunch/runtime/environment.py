"""The job environment the runtime sets before the notebook's kernel starts."""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path
from typing import Any

from nblaunch.runtime.contract import RESUME_MARKER, Env, RunDir


def job_environment(
    run: RunDir, job_id: str, checkpoint_dir: Path, wandb_run_id: str | None = None
) -> dict[str, str]:
    """``NBLAUNCH_*`` and ``WANDB_*`` variables for one attempt (see DESIGN.md); the
    W&B run is ``nbl-<job id>`` (every attempt logs into it) unless an engine named one."""
    run_dir = run.path
    env = {
        Env.RUN_DIR: str(run_dir),
        Env.WORKSPACE: str(run.workspace),
        Env.CHECKPOINT_DIR: str(checkpoint_dir),
        "WANDB_RUN_ID": wandb_run_id or wandb_run_name(job_id),
        "WANDB_RESUME": "allow",
        "WANDB_DIR": str(run_dir),
        "WANDB_DATA_DIR": str(run_dir / "wandb-data"),
        "WANDB_CACHE_DIR": str(run_dir / "wandb-cache"),
    }
    if not wandb_credentials():
        env["WANDB_MODE"] = "offline"
        # Offline, nothing of the user's login config is needed; keep wandb's files in the run.
        env["WANDB_CONFIG_DIR"] = str(run_dir / "wandb-config")
    resume = newest_checkpoint(checkpoint_dir)
    if resume is not None:
        env[Env.RESUME_FROM] = str(resume)
    return env


def wandb_run_name(job_id: str) -> str:
    """The id of the W&B run every attempt of job ``job_id`` logs into."""
    return f"nbl-{job_id}"


def quiet_wandb_settings() -> Any:
    """``wandb.Settings`` for the runs nblaunch itself opens (logging a job, writing a
    result, replaying history): no console output, no job of their own, no system stats."""
    import wandb

    return wandb.Settings(silent=True, disable_job_creation=True, x_disable_stats=True)


def wandb_credentials() -> bool:
    """Whether W&B would find an API key: the environment, or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def newest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``checkpoint_dir``.

    Two kinds count: nblaunch's own (``step-N`` folders, renamed into place
    whole) and HF Trainer's ``checkpoint-N`` folders, complete once their
    ``trainer_state.json`` — the last file the Trainer writes — parses and names
    step N. A save killed half-way is therefore never chosen.
    """
    if not checkpoint_dir.is_dir():
        return None
    best: tuple[int, float, Path] | None = None
    for path in checkpoint_dir.rglob("*-*"):
        step = _complete_step(path)
        if step is not None:
            key = (step, path.stat().st_mtime, path)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2] if best else None


def _complete_step(path: Path) -> int | None:
    prefix, _, number = path.name.rpartition("-")
    if not path.is_dir() or not number.isdigit():
        return None
    if prefix == "step" and (path / RESUME_MARKER).exists():
        return int(number)
    if prefix == "checkpoint":
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            return None
        if state.get("global_step") == int(number):
            return int(number)
    return None
