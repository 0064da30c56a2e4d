"""nblaunch: run notebook training code as queued, retryable GPU jobs.

Load the magics with ``%load_ext nblaunch``; from Python use ``submit``,
``Job`` and ``Queue``. Attributes load lazily so that ``python -m
nblaunch.runtime`` inside a job stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Job",
    "JobFailedError",
    "NBLaunchError",
    "Queue",
    "estimate_widget",
    "load_ipython_extension",
    "log",
    "on_preempt",
    "preempted",
    "submit",
]

if TYPE_CHECKING:
    from nblaunch.api import Job, Queue, submit
    from nblaunch.errors import JobFailedError, NBLaunchError
    from nblaunch.runtime import log, on_preempt, preempted

_LAZY = {
    "Job": "nblaunch.api",
    "Queue": "nblaunch.api",
    "submit": "nblaunch.api",
    "JobFailedError": "nblaunch.errors",
    "NBLaunchError": "nblaunch.errors",
    "estimate_widget": "nblaunch.widgets",
    "log": "nblaunch.runtime",
    "preempted": "nblaunch.runtime",
    "on_preempt": "nblaunch.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nblaunch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    if module == "nblaunch.api":
        _show_jobs_as_cards()
    return value


def _show_jobs_as_cards() -> None:
    """In a running IPython, display ``Job`` objects as live cards even without
    ``%load_ext nblaunch`` (the API itself knows nothing of the widgets)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        from nblaunch.extension.display import install

        install(shell)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nblaunch``: register the ``%%launch`` family of magics."""
    from nblaunch.extension.magics import register

    register(ipython)
