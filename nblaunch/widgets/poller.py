"""One background thread per kernel that refreshes every live widget from the store.

Widgets register themselves; the thread wakes every ``interval`` seconds (or
when woken), calls each widget's ``refresh()`` and forgets the widgets that
say they are done (their jobs ended) or were closed, and exits when none are
left; the next registration starts it again. The kernel's own thread never
waits on it: the store reads release the GIL, and each widget batches its
updates with ``hold_sync()``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Protocol

__all__ = ["LiveView", "Poller", "ViewTracking", "poller"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0
_MAX_FAILURES = 5


class LiveView(Protocol):
    """What the poller needs of a widget."""

    @property
    def closed(self) -> bool: ...

    def refresh(self) -> bool:
        """Bring the view up to date; return False once it will never change again."""
        ...


class Poller:
    """Refreshes registered views from one daemon thread."""

    def __init__(self, interval: float | None = None) -> None:
        if interval is None:
            interval = float(os.environ.get("NBLAUNCH_WIDGET_POLL_S", DEFAULT_INTERVAL_S))
        self.interval = interval
        self._views: list[LiveView] = []
        self._failures: dict[int, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def views(self) -> list[LiveView]:
        with self._lock:
            return list(self._views)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def register(self, view: LiveView, start: bool = True) -> None:
        """Keep ``view`` refreshed until it is closed or done."""
        with self._lock:
            if not any(v is view for v in self._views):
                self._views.append(view)
            if start and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(
                    target=self._run, name="nblaunch-widget-poller", daemon=True
                )
                self._thread.start()

    def unregister(self, view: LiveView) -> None:
        with self._lock:
            self._views = [v for v in self._views if v is not view]
            self._failures.pop(id(view), None)

    def wake(self) -> None:
        """Refresh now rather than at the next interval."""
        self._wake.set()

    def tick(self) -> int:
        """Refresh every view once; return how many stay registered."""
        for view in self.views:
            keep = False
            try:
                keep = not view.closed and view.refresh()
                self._failures.pop(id(view), None)
            except Exception:
                failures = self._failures.get(id(view), 0) + 1
                self._failures[id(view)] = failures
                log.exception("nblaunch widget refresh failed (%d/%d)", failures, _MAX_FAILURES)
                keep = failures < _MAX_FAILURES
            if not keep:
                self.unregister(view)
        return len(self.views)

    def _run(self) -> None:
        while True:
            remaining = self.tick()
            with self._lock:
                if not self._views:
                    self._thread = None
                    return
            if remaining:
                self._wake.wait(self.interval)
                self._wake.clear()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to exit (when no view is left); True if it did."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


_POLLER: Poller | None = None
_POLLER_LOCK = threading.Lock()


def poller() -> Poller:
    """This kernel's poller."""
    global _POLLER
    with _POLLER_LOCK:
        if _POLLER is None:
            _POLLER = Poller()
        return _POLLER


class ViewTracking:
    """Mixin for widgets with no natural end (a queue, a sweep): refresh while shown.

    The frontend counts a widget's views in ``_view_count`` once it is set to
    0; when every view of a widget that was shown is gone (its output
    cleared) the poller forgets it, and a new view registers it again.
    """

    _seen_view = False

    def _track_views(self, register: bool) -> None:
        """Start counting the frontend's views; ``register``: refresh from now on."""
        self._view_count = 0  # type: ignore[assignment]
        self.observe(self._on_views, names="_view_count")  # type: ignore[attr-defined]
        if register:
            poller().register(self)  # type: ignore[arg-type]

    def _on_views(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._seen_view = True
            poller().register(self)  # type: ignore[arg-type]
            poller().wake()

    @property
    def closed(self) -> bool:
        if getattr(self, "comm", None) is None:
            return True
        return self._seen_view and not getattr(self, "_view_count", 0)
