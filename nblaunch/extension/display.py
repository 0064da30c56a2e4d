"""How the magics' results show: the widgets where a frontend renders them, text elsewhere.

A returned ``Job`` is displayed through IPython's mimebundle formatter, which
the extension points at ``nblaunch.widgets.job_mimebundle`` (the live card in
a Jupyter kernel; static HTML and text otherwise). A job submitted with
``--no-widget``, or whose live card ``--wait`` already showed, is set to show
as its one-line text status instead. Everything from ``nblaunch.widgets`` is
looked up when needed, so the magics work while the widgets are absent.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from nblaunch.api import Job
from nblaunch.errors import MissingDependencyError

__all__ = ["install", "show_as_text", "show_live", "widget_frontend", "widgets_api"]

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
