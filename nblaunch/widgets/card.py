"""JobCard: what a ``Job`` displays as in a notebook.

State badge and place in the queue, attempt n of max, elapsed and ETA, a
progress bar, a live loss chart (train and eval loss; other logged metrics
selectable), the newest GPU figures, cost so far and the estimate, the error
when the job failed, and buttons to cancel (after a confirmation), open the
output notebook and tail the logs. The kernel's poller keeps it current.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as w

from nblaunch.api import Job
from nblaunch.errors import NBLaunchError
from nblaunch.queue.states import State
from nblaunch.runtime.contract import GPU_PREFIX, MAX_STEPS_METRIC
from nblaunch.snapshots import JobSnapshot
from nblaunch.widgets import render
from nblaunch.widgets.chart import PALETTE, LiveChart
from nblaunch.widgets.fallback import StaticFallback
from nblaunch.widgets.logs import log_tail
from nblaunch.widgets.poller import poller

__all__ = ["JobCard"]

#: metrics that are bookkeeping, not curves
NOT_PLOTTED = frozenset({MAX_STEPS_METRIC})
_FINAL_REFRESHES = 2  # refreshes after the job ended, to take in late metrics
_PROGRESS_EVERY = 10  # re-read progress (for the ETA) at least every 10th refresh


class JobCard(StaticFallback, w.VBox):
    """A live view of one job.

    Parameters
    ----------
    job
        The job to show (``nblaunch.Job(id)`` re-attaches after a kernel restart;
        the card then shows the whole history).
    live
        Register with the kernel's poller (off in tests that call ``refresh``).
    """

    def __init__(self, job: Job, *, live: bool = True) -> None:
        self.job = job
        self.latest: dict[str, float] = {}
        self.snapshot: JobSnapshot | None = None
        self._cursor = 0
        self._lock = threading.RLock()
        self._final_refreshes = 0
        self._progress_age = 0
        self._metrics_chosen = False
        self._syncing_choice = False

        self.header = w.HTML()
        self.details = w.HTML()
        self.bar = w.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=w.Layout(width="98%", height="12px")
        )
        self.chart = LiveChart(height=220)
        self.metric_picker = w.SelectMultiple(
            options=[], rows=3, description="metrics", layout=w.Layout(width="330px")
        )
        self.metric_picker.observe(self._on_pick, names="value")
        self.cancel_button = w.Button(description="Cancel job", icon="stop")
        self.confirm_button = w.Button(description="Yes, cancel it", button_style="danger")
        self.keep_button = w.Button(description="Keep running")
        self.output_button = w.Button(description="Output notebook", icon="book")
        self.logs_button = w.ToggleButton(description="Logs", icon="align-left")
        self.panel = w.Output(layout=w.Layout(max_height="320px", overflow="auto"))
        self.cancel_button.on_click(self._ask_cancel)
        self.confirm_button.on_click(self._do_cancel)
        self.keep_button.on_click(self._keep)
        self.output_button.on_click(self._show_output)
        self.logs_button.observe(self._toggle_logs, names="value")
        self.actions = w.HBox([self.cancel_button, self.output_button, self.logs_button])
        self.chart_box = w.VBox([self.chart])
        super().__init__(
            [self.header, self.bar, self.details, self.chart_box, self.actions, self.panel],
            layout=w.Layout(border="1px solid var(--jp-border-color2, #ddd)", padding="6px 10px"),
        )
        self.add_class("nbl-job-card")
        self.refresh()
        if live:
            poller().register(self)

    def __repr__(self) -> str:
        return f"JobCard({self.job.id})"

    # -- the poller's side ------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.comm is None

    def refresh(self) -> bool:
        """Read what changed from the store and update the widgets; False once the job is over."""
        with self._lock:
            rows, self._cursor = self.job.metrics_since(self._cursor)
            new_names = False
            for attempt, step, name, value, _t in rows:
                if name not in self.latest:
                    new_names = True
                self.latest[name] = value
                if name not in NOT_PLOTTED:
                    self.chart.append(name, step, value, attempt)
            before = self.snapshot
            if before is not None and before.final and not rows:
                snap = before  # an ended job changes no more
            else:
                # Progress reads the job's metrics: only when steps or the state moved
                reuse = before is not None and not rows and self._progress_age < _PROGRESS_EVERY
                snap = self.job.snapshot(metrics=not reuse)
                if before is not None and reuse and snap.state is before.state:
                    snap = dataclasses.replace(snap, progress=before.progress)
                    self._progress_age += 1
                elif reuse:
                    snap = self.job.snapshot()
                    self._progress_age = 0
                else:
                    self._progress_age = 0
                snap = dataclasses.replace(snap, latest=dict(self.latest))
            self.snapshot = snap
            if new_names:
                self._update_picker()
            self._render(snap)
            self.chart.flush()
            if snap.final:
                self._final_refreshes += 1
                return self._final_refreshes <= _FINAL_REFRESHES
            self._final_refreshes = 0
            return True

    def _render(self, snap: JobSnapshot) -> None:
        state = snap.state
        frac = snap.progress.fraction
        with self.hold_sync():
            self.header.value = render.job_header_html(snap)
            self.details.value = render.job_details_html(snap)
            self.bar.layout.visibility = "visible" if frac is not None else "hidden"
            self.bar.value = float(frac or 0.0)
            self.bar.bar_style = {State.SUCCEEDED: "success", State.FAILED: "danger"}.get(
                state, "info"
            )
            final = snap.final
            self.cancel_button.disabled = final
            if final and self.actions.children[0] is not self.cancel_button:
                self._keep()
            self.chart_box.layout.display = "none" if not self.chart.curve_keys else None
        if self.logs_button.value:
            self._write_logs()

    def _update_picker(self) -> None:
        names = [n for n in self.latest if n not in NOT_PLOTTED]
        default = self._default_curves(names)
        for key in default:
            color = PALETTE[1] if key in render.EVAL_LOSS else PALETTE[0]
            self.chart.add_curve(key, color=color, dash=key in render.EVAL_LOSS)
        self._syncing_choice = True
        try:
            chosen = list(self.metric_picker.value) if self._metrics_chosen else default
            with self.metric_picker.hold_sync():
                self.metric_picker.options = names
                self.metric_picker.value = tuple(n for n in chosen if n in names)
                self.metric_picker.rows = min(4, max(2, len(names)))
        finally:
            self._syncing_choice = False
        self.chart.show(self.metric_picker.value)
        if len(names) > 1 and self.metric_picker not in self.chart_box.children:
            self.chart_box.children = (self.chart, self.metric_picker)

    @staticmethod
    def _default_curves(names: list[str]) -> list[str]:
        losses = [n for n in names if n in render.TRAIN_LOSS or n in render.EVAL_LOSS]
        if losses:
            return losses
        others = [n for n in names if not n.startswith(GPU_PREFIX)]
        return (others or names)[:1]

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._syncing_choice:
            return
        with self._lock:
            self._metrics_chosen = True
            self.chart.show(change["new"])
            self.chart.flush()

    # -- buttons ------------------------------------------------------------

    def _ask_cancel(self, _button: Any = None) -> None:
        prompt = w.HTML(f"Cancel job <code>{escape(self.job.id)}</code>?")
        self.actions.children = (prompt, self.confirm_button, self.keep_button)

    def _keep(self, _button: Any = None) -> None:
        self.actions.children = (self.cancel_button, self.output_button, self.logs_button)

    def _do_cancel(self, _button: Any = None) -> None:
        try:
            self.job.cancel()
        except NBLaunchError as exc:  # it ended since the card last refreshed
            self.logs_button.value = False
            self.panel.outputs = ({"output_type": "stream", "name": "stdout", "text": f"{exc}\n"},)
        self._keep()
        self.refresh()
        poller().wake()

    def _show_output(self, _button: Any = None) -> None:
        self.logs_button.value = False
        path = self.snapshot.output_notebook if self.snapshot else None
        if path is None or not Path(path).exists():
            html = "The output notebook is written once the job starts running."
            plain = html
        else:
            plain = str(path)
            html = f"output notebook: <code>{escape(str(path))}</code>"
            rel = _relative_to_cwd(Path(path))
            if rel is not None:
                html = f'<a href="{escape(rel)}" target="_blank">open {escape(rel)}</a><br>' + html
        self.panel.outputs = (
            {
                "output_type": "display_data",
                "data": {"text/html": html, "text/plain": plain},
                "metadata": {},
            },
        )

    def _toggle_logs(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._write_logs()
        else:
            self.panel.outputs = ()

    def _write_logs(self) -> None:
        text = log_tail(self.job.log_files()) or "(no output yet)"
        self.panel.outputs = ({"output_type": "stream", "name": "stdout", "text": text + "\n"},)

    # -- display --------------------------------------------------------------

    def text(self) -> str:
        """The card as plain text."""
        assert self.snapshot is not None  # refreshed in __init__
        return render.job_text(self.snapshot)

    def html(self) -> str:
        """The card as static HTML (with a sparkline of the training loss)."""
        curve = None
        for key in render.TRAIN_LOSS:
            if self.chart.count(key) > 1:
                from nblaunch.widgets.downsample import minmax

                curve = minmax(*self.chart.values(key), max_points=200)
                break
        assert self.snapshot is not None  # refreshed in __init__
        return render.job_card_html(self.snapshot, curve)

    def close(self) -> None:
        poller().unregister(self)
        for name in _PARTS:
            child = getattr(self, name, None)  # close() also runs from __del__ of a half-built card
            if child is not None:
                child.close()
        super().close()


_PARTS = (
    "header",
    "details",
    "bar",
    "chart",
    "metric_picker",
    "cancel_button",
    "confirm_button",
    "keep_button",
    "output_button",
    "logs_button",
    "panel",
    "actions",
    "chart_box",
)


def _relative_to_cwd(path: Path) -> str | None:
    """``path`` relative to the kernel's folder, if inside it (a link the frontend can open)."""
    try:
        rel = path.resolve().relative_to(Path(os.getcwd()).resolve())
    except ValueError:
        return None
    return rel.as_posix()
