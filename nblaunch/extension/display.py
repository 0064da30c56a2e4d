"""How the magics' results show: the widgets where a frontend renders them, text elsewhere.

A returned ``Job`` is displayed through IPython's mimebundle formatter, which
the extension points at ``nblaunch.widgets.job_mimebundle`` (the live card in
a Jupyter kernel; static HTML and text otherwise). A job submitted with
``--no-widget``, or whose live card ``--wait`` already showed, is set to show
as its one-line text status instead. Everything from ``nblaunch.widgets`` is
looked up when needed, so the magics work while the widgets are absent.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from nblaunch.errors import MissingDependencyError

if TYPE_CHECKING:
    from nblaunch.client import Job
    from nblaunch.queue.store import JobRow

__all__ = ["install", "jobs_text", "show_as_text", "show_live", "widget_frontend", "widgets_api"]

_TEXT_ONLY: weakref.WeakSet[Job] = weakref.WeakSet()


def widgets_api(name: str) -> Any:
    """``nblaunch.widgets.<name>``, or ``None`` when the widgets do not provide it."""
    try:
        import nblaunch.widgets as widgets
    except ImportError:
        return None
    try:
        return getattr(widgets, name)
    except (AttributeError, ImportError, MissingDependencyError):
        return None


def install(shell: Any) -> None:
    """Show every ``Job`` in ``shell`` through the widgets' mimebundle when they provide one."""
    if widgets_api("job_mimebundle") is None:
        return
    from nblaunch.client import Job

    shell.display_formatter.mimebundle_formatter.for_type(Job, _job_bundle)


def _job_bundle(job: Job) -> dict[str, Any] | None:
    if job in _TEXT_ONLY:
        return None  # IPython falls back to the Job's own text status
    bundle = widgets_api("job_mimebundle")
    return bundle(job) if bundle is not None else None


def show_as_text(job: Job) -> None:
    """Display ``job`` as its text status from now on."""
    _TEXT_ONLY.add(job)


def widget_frontend() -> bool:
    """True when a frontend renders nblaunch's widgets here (a Jupyter kernel)."""
    check = widgets_api("has_widget_frontend")
    return bool(check is not None and check())


def show_live(jobs: Sequence[Job], sweep_id: str | None) -> None:
    """Show the live view of ``jobs`` now: the sweep board, else each job's card."""
    from IPython.display import display

    board = widgets_api("sweep_board") if sweep_id else None
    if board is not None:
        display(board(sweep_id))
        return
    for job in jobs:
        display(job)


def jobs_text(rows: Iterable[JobRow], now: float | None = None) -> str:
    """A fixed-width table of job rows, newest first, for ``%launch_jobs``."""
    from nblaunch.jobs.spec import priority_name

    now = time.time() if now is None else now
    header = ("id", "name", "queue", "state", "priority", "gpus", "attempt", "submitted")
    table = [header]
    for r in rows:
        table.append(
            (
                r.id,
                r.name,
                r.queue,
                r.state.value,
                priority_name(r.priority),
                str(r.gpus),
                str(r.attempt),
                _ago(now - r.submitted_at),
            )
        )
    if len(table) == 1:
        return "no jobs"
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{max(0, int(seconds))}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"
