"""Errors a user can cause, as one family.

::

    NBLaunchError                 anything a user can cause; message says what and how to fix
    ├── StoreError                the home or its store is unusable (unwritable, corrupt, newer)
    ├── ConfigError               queues.toml is malformed or names an unknown key
    │   └── RunnerUnavailableError    a queue's runner is a plug-in that failed to load
    ├── SpecError                 a job request is malformed (notebook, parameters, options)
    │   └── CapacityError         the job asks for more than its queue has
    ├── UnknownQueueError         no queue of that name
    ├── UnknownJobError           no job with that id
    ├── MissingDependencyError    an optional dependency is not installed
    ├── TransitionError           a job is not in a state that allows the change asked for
    ├── EngineError               a queue's engine (Slurm …) refused a request or did not answer
    └── JobFailedError            the job ran and did not succeed

Magics turn these into IPython's ``UsageError`` and the CLI into one line on
stderr with exit code 2 (``JobFailedError``: exit code 1); a widget's button
shows the line in its widget; nothing else in the package catches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class NBLaunchError(Exception):
    """Root of every error a user can cause."""


class StoreError(NBLaunchError):
    """``$NBLAUNCH_HOME`` or its store cannot be used; the message names the path and the fix.

    nblaunch never deletes nor rewrites a store it refuses: the fix is the user's.
    """


class EngineError(NBLaunchError):
    """A queue's engine (Slurm's commands …) refused a request or did not answer in time."""


class AgentStartError(NBLaunchError):
    """The background agent could not be started (see its log)."""


class ConfigError(NBLaunchError):
    """The queues file is malformed or names an unknown key."""


class RunnerUnavailableError(ConfigError):
    """A queue's runner is an installed plug-in that failed to load."""


class SpecError(NBLaunchError):
    """A job request is malformed."""


class CapacityError(SpecError):
    """The job asks for more resources than its queue has."""


class UnknownQueueError(NBLaunchError):
    """No queue of that name is configured."""


class UnknownJobError(NBLaunchError):
    """No job with that id exists in the store."""


class MissingDependencyError(NBLaunchError):
    """An optional dependency is missing; the message carries the install command."""


class TransitionError(NBLaunchError):
    """The job is not in a state that allows the requested change."""


class JobFailedError(NBLaunchError):
    """The job ended in a state other than ``succeeded``.

    Carries papermill's fields for a failed cell so a notebook can show the
    job's own traceback rather than nblaunch internals.
    """

    def __init__(
        self,
        job_id: str,
        state: str,
        error: dict[str, Any] | None,
        output_notebook: Path | None,
        log_dir: Path | None,
    ) -> None:
        self.job_id = job_id
        self.state = state
        error = error or {}
        self.ename: str | None = error.get("ename")
        self.evalue: str | None = error.get("evalue")
        self.cell_index: int | None = error.get("cell_index")
        self.traceback: list[str] = list(error.get("traceback") or [])
        self.output_notebook = output_notebook
        self.log_dir = log_dir
        where = f" in cell {self.cell_index}" if self.cell_index is not None else ""
        what = f": {self.ename}: {self.evalue}" if self.ename else ""
        super().__init__(
            f"job {job_id} {state}{where}{what} "
            f"(output notebook: {output_notebook}, logs: {log_dir})"
        )

    def _render_traceback_(self) -> list[str]:
        header = [
            f"nblaunch job {self.job_id} {self.state}; output notebook: {self.output_notebook}"
        ]
        return header + (self.traceback or [str(self)])
