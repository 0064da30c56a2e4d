"""QueueStatus: a queue's jobs as a live table, with GPU slot usage and per-row cancel.

``%launch_queue [Q]`` and ``nblaunch.widgets.queue_status(name)`` show it. Rows are
reused between refreshes (only their HTML changes), a state filter narrows
the table, and each row's cancel button asks once more before it cancels.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import ipywidgets as w

from nblaunch.api import Queue
from nblaunch.errors import TransitionError
from nblaunch.snapshots import FILTERS, LIVE, QueueSnapshot
from nblaunch.widgets import render
from nblaunch.widgets.fallback import StaticFallback
from nblaunch.widgets.poller import ViewTracking, poller

__all__ = ["QueueStatus"]

_BUTTON_W = 92
_IDLE_EVERY = 5  # with nothing active, re-read the store every 5th tick


class _Row:
    def __init__(self, owner: QueueStatus, job_id: str) -> None:
        self.job_id = job_id
        self.html = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.button = w.Button(
            description="cancel", layout=w.Layout(width=f"{_BUTTON_W - 6}px", height="26px")
        )
        self.button.on_click(lambda _b: owner._cancel_clicked(self))
        self.box = w.HBox([self.html, self.button], layout=w.Layout(align_items="center"))
        self.armed = False

    def close(self) -> None:
        for widget in (self.html, self.button, self.box):
            widget.close()


class QueueStatus(ViewTracking, StaticFallback, w.VBox):
    """A live table of one queue's jobs.

    Parameters
    ----------
    queue
        A ``nblaunch.Queue`` or its name.
    state
        Initial filter: ``all``, ``active``, ``queued``, ``running``,
        ``succeeded``, ``failed``, ``cancelled``.
    limit
        How many (newest) jobs to list.
    live
        Register with the kernel's poller.
    """

    def __init__(
        self,
        queue: Queue | str = "local",
        *,
        state: str = "all",
        limit: int = 50,
        live: bool = True,
        root: Path | None = None,
    ) -> None:
        if isinstance(queue, str):
            queue = Queue(queue, root=root)
        self.queue = queue
        self.limit = limit
        self.summary: QueueSnapshot | None = None
        self._row_widgets: dict[str, _Row] = {}
        self._lock = threading.RLock()
        self._tick = 0
        self.filter = w.Dropdown(
            options=list(FILTERS),
            value=state,
            description="show",
            layout=w.Layout(width="200px"),
        )
        self.filter.observe(lambda _c: self.refresh(force=True), names="value")
        self.header = w.HTML()
        self.table = w.VBox()
        self.empty = w.HTML()
        super().__init__([self.filter, self.header, self.table, self.empty])
        self.add_class("nbl-queue-status")
        self.refresh(force=True)
        self._track_views(register=live)

    def __repr__(self) -> str:
        return f"QueueStatus({self.queue.name!r})"

    def refresh(self, force: bool = False) -> bool:
        """Re-read the queue (every tick while jobs are active, less often when idle)."""
        with self._lock:
            self._tick += 1
            before = self.summary
            active = before is None or any(before.counts.get(s.value) for s in LIVE)
            if not force and not active and self._tick % _IDLE_EVERY:
                return True
            self.summary = self.queue.snapshot(self.filter.value, self.limit)
            self._render(self.summary)
            return True

    def _render(self, summary: QueueSnapshot) -> None:
        now = summary.taken_at
        self.header.value = render.queue_header_html(summary, action_width=_BUTTON_W)
        self.empty.value = "" if summary.jobs else render.queue_empty_html(summary)
        wanted = [r.id for r in summary.jobs]
        for job_id in list(self._row_widgets):
            if job_id not in wanted:
                self._row_widgets.pop(job_id).close()
        for r in summary.jobs:
            row = self._row_widgets.get(r.id)
            if row is None:
                row = self._row_widgets[r.id] = _Row(self, r.id)
            final = r.final
            with row.html.hold_sync():
                row.html.value = render.queue_row_html(r, now)
            with row.button.hold_sync():
                row.button.disabled = final
                if final and row.armed:
                    row.armed = False
                row.button.description = "confirm?" if row.armed else "cancel"
                row.button.button_style = "danger" if row.armed else ""
        boxes = tuple(self._row_widgets[i].box for i in wanted)
        if boxes != self.table.children:
            self.table.children = boxes

    def _cancel_clicked(self, row: _Row) -> None:
        if not row.armed:
            row.armed = True
            row.button.description = "confirm?"
            row.button.button_style = "danger"
            return
        row.armed = False
        # A job that ended since the table was drawn has nothing to cancel; the
        # refresh shows how it ended.
        with contextlib.suppress(TransitionError):
            self.queue.job(row.job_id).cancel()
        self.refresh(force=True)
        poller().wake()

    def text(self) -> str:
        assert self.summary is not None  # refreshed in __init__
        return render.queue_text(self.summary)

    def html(self) -> str:
        assert self.summary is not None  # refreshed in __init__
        return render.queue_table_html(self.summary)

    def close(self) -> None:
        poller().unregister(self)
        for row in getattr(self, "_row_widgets", {}).values():
            row.close()
        for name in ("filter", "header", "table", "empty"):
            widget = getattr(self, name, None)
            if widget is not None:
                widget.close()
        super().close()
