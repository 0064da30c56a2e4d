"""``nblaunch sync JOB``: a job's offline W&B runs, one per attempt, uploaded as one run.

Every attempt of a job logs into the same W&B run id. Offline, wandb ignores
resume, so each attempt's run starts its history at step 0 again, and ``wandb
sync`` of a later attempt's folder replaces what the earlier one uploaded
(wandb/wandb#3841; wandb has no supported merge of offline segments). So:

- the first attempt that logged is uploaded whole by ``wandb sync`` (history,
  config, summary, files, media);
- each later attempt's history is replayed into the resumed run from the
  attempt's ``metrics.jsonl`` (every number the notebook logged, at its step),
  shifted where needed so steps continue after the last one uploaded. Its media,
  tables, files and config changes cannot be carried; they stay in its offline
  folder, and the report says so.

An attempt that ran online is W&B's already; later ones continue after it. A segment
is marked once uploaded, so running sync again uploads nothing twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nblaunch.errors import ConfigError, EngineError, SpecError
from nblaunch.runners.wandb.client import wandb_module
from nblaunch.runtime.contract import RunDir, replace_private
from nblaunch.runtime.environment import quiet_wandb_settings, wandb_credentials
from nblaunch.runtime.metrics import read_new

#: in an attempt's folder once its W&B run is uploaded: ``{"last_step": N}``
SYNCED_MARKER = "wandb-synced.json"
SYNC_TIMEOUT_S = 600.0


@dataclass
class SegmentReport:
    """What ``sync`` did with one attempt's offline run."""

    attempt: int
    how: str  # "wandb sync" | "replayed" | "already synced" | "online" | "nothing logged"
    rows: int = 0
    first_step: int | None = None
    last_step: int | None = None
    not_carried: str | None = None


@dataclass
class SyncReport:
    run: str
    segments: list[SegmentReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync_attempts(
    attempts: Sequence[tuple[int, RunDir]], entity: str | None, project: str | None
) -> SyncReport:
    """Upload the offline W&B runs of a job's ``(attempt number, folder)`` pairs."""
    logged = [(n, run, _where(run)) for n, run in attempts]
    found = [(n, run, where) for n, run, where in logged if where is not None]
    if not found:
        raise SpecError(
            "this job left no W&B run to sync: its notebook never called wandb.log "
            "(nblaunch.log metrics are in the job's own store: `nblaunch metrics JOB`)"
        )
    if not any(where.get("offline") for _, _, where in found):
        raise SpecError("this job's W&B runs were online: W&B has them already")
    if not wandb_credentials():
        raise ConfigError("nblaunch sync uploads to W&B: run `wandb login` (or set WANDB_API_KEY)")
    first = found[0][2]
    run_id = str(first["id"])
    entity = entity or first.get("entity") or None
    project = project or first.get("project") or None
    report = SyncReport(run="/".join(p for p in (entity, project, run_id) if p))
    next_step = 0
    uploaded_any = False
    for n, run, where in found:
        rows = _rows(run)
        marker = run.path / SYNCED_MARKER
        if not where.get("offline"):  # W&B has it; later segments continue after it
            next_step = max([next_step, *(step + 1 for step, _ in rows)])
            uploaded_any = True
            report.segments.append(SegmentReport(n, "online"))
            continue
        if marker.exists():
            next_step = int(json.loads(marker.read_text())["last_step"]) + 1
            uploaded_any = True
            report.segments.append(SegmentReport(n, "already synced"))
            continue
        if not uploaded_any:
            _wandb_sync(_offline_folders(run, run_id), run_id, entity, project)
            steps = [step for step, _ in rows]
            segment = SegmentReport(n, "wandb sync", len(rows), min(steps, default=None))
            segment.last_step = max(steps, default=next_step - 1)
        elif not rows:
            report.segments.append(SegmentReport(n, "nothing logged"))
            continue
        else:
            begin, end = _replay(rows, next_step, run_id, entity, project)
            segment = SegmentReport(
                n,
                "replayed",
                len(rows),
                begin,
                end,
                not_carried=f"media, tables, files and config changes stay in {run.path / 'wandb'}",
            )
        assert segment.last_step is not None
        replace_private(marker, json.dumps({"last_step": segment.last_step}).encode())
        report.segments.append(segment)
        next_step = segment.last_step + 1
        uploaded_any = True
    return report


def _where(run: RunDir) -> dict[str, Any] | None:
    try:
        data = json.loads(run.wandb_run.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("id") else None


def _offline_folders(run: RunDir, run_id: str) -> list[Path]:
    found = sorted((run.path / "wandb").glob(f"offline-run-*-{run_id}"))
    if not found:
        raise SpecError(f"no offline W&B folder for run {run_id} under {run.path / 'wandb'}")
    return found


def _rows(run: RunDir) -> list[tuple[int, dict[str, float]]]:
    """The attempt's logged numbers by step, in step order (GPU samples, which have no
    step, are not the notebook's history)."""
    found, _ = read_new(run.metrics, 0)
    rows: dict[int, dict[str, float]] = {}
    for step, name, value, _when in found:
        if step is not None:
            rows.setdefault(step, {})[name] = value
    return sorted(rows.items())


def _wandb_sync(folders: list[Path], run_id: str, entity: str | None, project: str | None) -> None:
    command = [sys.executable, "-m", "wandb", "sync", "--id", run_id]
    command += ["-e", entity] if entity else []
    command += ["-p", project] if project else []
    try:
        # in a scratch folder: wandb's CLI keeps its debug logs in ./wandb
        with tempfile.TemporaryDirectory(prefix="nblaunch-sync-") as scratch:
            done = subprocess.run(
                [*command, *map(str, folders)],
                capture_output=True,
                text=True,
                timeout=SYNC_TIMEOUT_S,
                check=False,
                cwd=scratch,
                env={**os.environ, "WANDB_SILENT": "true"},
            )
    except subprocess.TimeoutExpired:
        raise EngineError(f"wandb sync did not finish in {SYNC_TIMEOUT_S:g}s; try again") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EngineError(f"wandb sync failed (exit {done.returncode}): {last[0]}")


def _replay(
    rows: list[tuple[int, dict[str, float]]],
    next_step: int,
    run_id: str,
    entity: str | None,
    project: str | None,
) -> tuple[int, int]:
    """Log ``rows`` into the resumed run, shifted to start at or after ``next_step`` and
    after the run's own last step (W&B drops a step below it); the first and last step."""
    wandb = wandb_module()
    with (
        tempfile.TemporaryDirectory(prefix="nblaunch-sync-") as scratch,
        wandb.init(
            id=run_id,
            entity=entity,
            project=project,
            resume="must",
            dir=scratch,
            mode="online",
            settings=quiet_wandb_settings(),
            reinit="create_new",
        ) as run,
    ):
        shift = max(0, next_step - rows[0][0], int(run.step) - rows[0][0])
        for step, metrics in rows:
            run.log(metrics, step=step + shift)
    return rows[0][0] + shift, rows[-1][0] + shift
