"""The wandb runner: each attempt is a W&B Launch run in a team's Launch queue.

Submitting exports the bundle as a W&B job (``job_files``), logs it, and queues
it with ``launch_add``; the team's own Launch agent runs the job's entrypoint
(``python -m nblaunch.runtime .``), which writes the attempt's result into the
run's summary as it ends. The agent here follows the queue item and then the
run: its history becomes the attempt's metrics (the job card's live loss),
its reported result the attempt's end.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from nblaunch.errors import ConfigError
from nblaunch.runners.base import UNLIMITED, AttemptEnd, Launch, Pending, Runner, Slots
from nblaunch.runners.wandb.client import WandbClient, enqueue, publish_job
from nblaunch.runners.wandb.job_files import export_job
from nblaunch.runners.wandb.options import WandbOptions
from nblaunch.runtime.contract import (
    BUNDLE_SPEC,
    Outcome,
    RunDir,
    append_line,
    make_private_dir,
    replace_private,
)
from nblaunch.runtime.environment import wandb_credentials, wandb_run_name
from nblaunch.runtime.metrics import append_metrics

#: the first history step the attempt's metrics have not yet been read from
HISTORY_CURSOR = "wandb-history-step"
#: the attempt's handle, written as soon as its queue item exists (``recover``)
HANDLE_FILE = "wandb-handle.json"
#: what W&B says of a run whose process died without a word (or was stopped)
_DIED = ("crashed", "killed")


class WandbRunner(Runner):
    """Queues attempts in a W&B Launch queue and reads them back from W&B."""

    name = "wandb"
    Options = WandbOptions
    options: WandbOptions

    def __init__(self, options: WandbOptions) -> None:
        super().__init__(options)
        self.client = WandbClient(options)
        #: queue item → (when, what the last look at W&B said)
        self._seen: dict[str, tuple[float, AttemptEnd | Pending | None]] = {}
        #: queue items whose run W&B has shown running
        self._ran: set[str] = set()
        #: queue items asked to stop → when to give up waiting for the run to end
        self._stopping: dict[str, float] = {}

    def check_ready(self) -> None:
        if not wandb_credentials():
            raise ConfigError(
                f"queue {self.options.name!r} sends jobs to W&B Launch, which needs W&B "
                "credentials; run `wandb login` (or set WANDB_API_KEY) and submit again"
            )

    def slots(self) -> Slots:
        # The team's Launch agent decides what runs when: every waiting job is handed over.
        return Slots((), UNLIMITED, engine=True)

    # -- submitting --------------------------------------------------------------

    def submit(self, launch: Launch) -> dict[str, Any]:
        spec = json.loads((launch.bundle / BUNDLE_SPEC).read_text())
        job = (launch.previous or {}).get("job")
        if job is None:  # later attempts run the same job version
            with tempfile.TemporaryDirectory(prefix="nblaunch-wandb-job-") as scratch:
                folder = export_job(launch.bundle, Path(scratch) / "job")
                job = publish_job(folder, launch.bundle, self.options, _artifact_name(spec["name"]))
        run_id = wandb_run_name(launch.job_id)
        entity = self.client.entity
        item = enqueue(self.options, entity, job, spec["params"], spec["priority"], run_id)
        handle = {"external_id": item, "job": job, "run_id": run_id}
        make_private_dir(launch.run.logs)
        replace_private(launch.run.path / HANDLE_FILE, json.dumps(handle).encode())
        append_line(
            launch.run.stdout,
            f"nblaunch: queued {job} in W&B Launch queue {entity}/{self.options.launch_queue} "
            f"as item {item}; it logs into run {entity}/{self.options.project}/{run_id}",
        )
        return handle

    def recover(self, run: RunDir, job_id: str, attempt: int) -> dict[str, Any] | None:
        try:
            handle = json.loads((run.path / HANDLE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return handle if isinstance(handle, dict) else None

    # -- state -------------------------------------------------------------------

    def poll(self, handle: dict[str, Any], run: RunDir) -> AttemptEnd | Pending | None:
        item = handle["external_id"]
        seen = self._seen.get(item)
        if seen is not None and time.monotonic() - seen[0] < self.options.poll_interval_s:
            return seen[1]
        status = self._look(handle, run)
        self._seen[item] = (time.monotonic(), status)
        return status

    def _look(self, handle: dict[str, Any], run: RunDir) -> AttemptEnd | Pending | None:
        """The queue item first: the run is shared by every attempt of the job, so what
        it says counts only once a Launch agent has taken this attempt's item."""
        item, run_id = handle["external_id"], handle["run_id"]
        state = self.client.item_state(item)
        if state is None:
            return self._end(item, _lost(f"W&B Launch queue item {item} is gone (deleted)"))
        if state == "failed":
            error = {
                "ename": "LaunchFailed",
                "evalue": f"the W&B Launch agent failed queue item {item}; see the queue "
                f"{self.options.launch_queue!r} in W&B for its error",
                "cell_index": None,
            }
            return self._end(item, AttemptEnd(Outcome.RUNNER_ERROR, error))
        if state == "pending":
            return Pending(f"waiting in W&B Launch queue {self.options.launch_queue!r}")
        wb_run = self.client.run(run_id)  # a Launch agent took it: its process runs
        if wb_run is None:
            return self._stopping_over(item, run_id)
        self._read_history(wb_run, run)
        view = self.client.view(wb_run)
        if view.result is not None and view.item == item:
            view.result.write(run.result)
            return self._end(item, AttemptEnd(view.result.outcome, view.result.error))
        if view.state == "running":
            self._ran.add(item)
        elif item in self._ran and view.state in _DIED:
            why = f"W&B says run {run_id} {view.state} and it reported no result"
            return self._end(item, _lost(why))
        # Ended without a result yet: the runtime writes it as its last act (and a notebook
        # may finish its own run and go on), so only the job's time limit ends the wait.
        return self._stopping_over(item, run_id)

    def _stopping_over(self, item: str, run_id: str) -> AttemptEnd | None:
        """While a stop is asked for, ask again each look (a run only hears it while it
        logs); past the grace, the attempt ends here and the run is left to W&B."""
        deadline = self._stopping.get(item)
        if deadline is None:
            return None
        if time.monotonic() > deadline:
            why = f"W&B run {run_id} was asked to stop and has not ended; stop it in W&B"
            return self._end(item, _lost(why))
        self.client.stop_run(run_id)
        return None

    def _end(self, item: str, end: AttemptEnd) -> AttemptEnd:
        self._ran.discard(item)
        self._stopping.pop(item, None)
        return end

    def _read_history(self, wb_run: Any, run: RunDir) -> None:
        """Append the W&B run's new history rows to the attempt's metrics (the agent
        ingests them as it does a local attempt's)."""
        cursor = run.path / HISTORY_CURSOR
        start = int(cursor.read_text()) if cursor.exists() else _first_step(run)
        last = start - 1
        for row in self.client.history(wb_run, start):
            step = row.get("_step")
            if not isinstance(step, int) or step < start:
                continue
            when = row.get("_timestamp")
            when = float(when) if isinstance(when, (int, float)) else time.time()
            metrics = {k: v for k, v in row.items() if not k.startswith("_")}
            append_metrics(run.metrics, metrics, step, when)
            last = max(last, step)
        if last >= start:
            replace_private(cursor, str(last + 1).encode())

    # -- stopping ----------------------------------------------------------------

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        item = handle["external_id"]
        self._seen.pop(item, None)
        if self.client.item_state(item) == "pending":
            self.client.delete_item(item)
            return
        self.client.stop_run(handle["run_id"])
        self._stopping.setdefault(item, time.monotonic() + grace_s + self.options.poll_interval_s)


def _lost(why: str) -> AttemptEnd:
    return AttemptEnd(Outcome.LOST, {"ename": "AttemptLost", "evalue": why, "cell_index": None})


def _first_step(run: RunDir) -> int:
    """Where an attempt's reading starts: after what its job's earlier attempts read
    (every attempt logs into the same run, resumed)."""
    steps = [
        int(p.read_text())
        for p in run.path.parent.glob(f"*/{HISTORY_CURSOR}")
        if p.read_text().strip().isdigit()
    ]
    return max(steps, default=0)


def _artifact_name(name: str) -> str:
    """A W&B artifact name from a job name (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:100] or "job"
