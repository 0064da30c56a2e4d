"""The notebook face: job card, queue status, cost estimate, sweep board, live loss.

Widgets are thin views over ``nblaunch.Job`` / ``nblaunch.Queue``: built from
ipywidgets 8 plus one anywidget chart, refreshed by one background poller per
kernel, and rendered to HTML by pure functions (``render``). Without a widget
frontend (terminal IPython, nbconvert) every widget has a useful
``text/plain`` and a static ``text/html``.

Entry points the rest of nblaunch calls:

- ``display_job(job)`` / ``job_mimebundle(job)``: what a ``Job`` shows as;
- ``job_card(job)``, ``queue_status(name)``, ``estimate_widget(**kw)``,
  ``sweep_board(sweep_id)``: the widgets themselves.

ipywidgets and anywidget are imported only when a widget is built, so
``import nblaunch.widgets`` is cheap and works without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from nblaunch.api import Job, Queue
    from nblaunch.widgets.card import JobCard
    from nblaunch.widgets.chart import LiveChart
    from nblaunch.widgets.cost_estimate import CostEstimate
    from nblaunch.widgets.sweep import SweepBoard
    from nblaunch.widgets.table import QueueStatus

__all__ = [
    "CostEstimate",
    "JobCard",
    "LiveChart",
    "QueueStatus",
    "SweepBoard",
    "display_job",
    "estimate_widget",
    "estimate_widget_from_options",
    "has_widget_frontend",
    "job_card",
    "job_mimebundle",
    "job_text",
    "queue_status",
    "sweep_board",
]

_LAZY = {
    "CostEstimate": "nblaunch.widgets.cost_estimate",
    "JobCard": "nblaunch.widgets.card",
    "LiveChart": "nblaunch.widgets.chart",
    "QueueStatus": "nblaunch.widgets.table",
    "SweepBoard": "nblaunch.widgets.sweep",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nblaunch.widgets' has no attribute {name!r}")
    _require()
    return getattr(importlib.import_module(module), name)


def _require() -> None:
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        from nblaunch.errors import MissingDependencyError

        raise MissingDependencyError(
            "nblaunch's widgets need ipywidgets and anywidget: pip install 'nblaunch[widgets]'"
        ) from None


def has_widget_frontend() -> bool:
    """True in a Jupyter kernel with ipywidgets and anywidget installed.

    Terminal IPython and plain Python get text instead of widgets.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        _require()
    except Exception:
        return False
    return True


def job_card(job: Job | str, *, live: bool | None = None) -> JobCard:
    """The live card of ``job`` (a ``Job`` or its id).

    ``live`` (default: in a Jupyter kernel) keeps it refreshed by the kernel's poller.
    """
    _require()
    from nblaunch.widgets.card import JobCard

    return JobCard(_job(job), live=has_widget_frontend() if live is None else live)


def queue_status(
    name: Queue | str = "local", *, live: bool | None = None, **kwargs: Any
) -> QueueStatus:
    """The live table of queue ``name`` (``state=``, ``limit=`` narrow it)."""
    _require()
    from nblaunch.widgets.table import QueueStatus

    return QueueStatus(name, live=has_widget_frontend() if live is None else live, **kwargs)


def estimate_widget(**kwargs: Any) -> CostEstimate:
    """Interactive cost estimate; ``kwargs`` are ``nblaunch.jobs.estimate.estimate``'s."""
    _require()
    from nblaunch.widgets.cost_estimate import CostEstimate

    return CostEstimate(**kwargs)


def estimate_widget_from_options(
    options: dict[str, Any], namespace: dict[str, Any] | None = None
) -> CostEstimate:
    """``%launch_estimate``: the widget for ``parse_estimate_args(argv)`` values."""
    _require()
    from nblaunch.widgets.cost_estimate import CostEstimate

    return CostEstimate.from_options(options, namespace)


def sweep_board(
    sweep_id: str, *, live: bool | None = None, root: Path | None = None, **kwargs: Any
) -> SweepBoard:
    """The overlaid curves of the jobs submitted with ``sweep_id`` (``metric=``, ``mode=``)."""
    _require()
    from nblaunch.widgets.sweep import SweepBoard

    return SweepBoard(
        sweep_id, live=has_widget_frontend() if live is None else live, root=root, **kwargs
    )


def job_text(job: Job | str) -> str:
    """Several lines about ``job`` for terminals and ``text/plain``."""
    from nblaunch.widgets import render

    return render.job_text(_job(job).snapshot())


def job_mimebundle(job: Job | str, **_kwargs: Any) -> dict[str, Any]:
    """What ``Job._repr_mimebundle_`` returns: a live card's bundle in a Jupyter kernel
    (widget view + ``text/html`` + ``text/plain``), else static HTML and text."""
    if has_widget_frontend():
        bundle = job_card(job)._repr_mimebundle_()
        if bundle is not None:
            return bundle
    from nblaunch.widgets import render

    snap = _job(job).snapshot()
    return {"text/plain": render.job_text(snap), "text/html": render.job_card_html(snap)}


def display_job(job: Job | str) -> None:
    """Show ``job``: its live card in a Jupyter kernel, text elsewhere."""
    from IPython.display import display

    if has_widget_frontend():
        display(job_card(job))
    else:
        print(job_text(job))


def _job(job: Job | str) -> Job:
    if isinstance(job, str):
        from nblaunch.api import Job

        return Job(job)
    return job
