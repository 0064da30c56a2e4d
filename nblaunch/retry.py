"""Retry policies: which failure classes a job retries, how often, and how long it waits.

A queue sets the default (``[queues.NAME.retry]`` in queues.toml); a job may
override any key from the magic, the CLI or the API. Infrastructure failures
(``preempted``, ``lost``) are always retried, each under its own cap (0 turns
it off); the job's own failures (``failed``, ``oom``, ``timeout``) only when
listed in ``retry_on``, under ``max_retries`` (SkyPilot's split).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nblaunch.errors import SpecError
from nblaunch.runtime.contract import FAILURE_CLASSES, INFRASTRUCTURE, FailureClass

__all__ = ["RetryPolicy", "retry_counter", "retry_overrides"]

#: per failure class: the job's counter of its retries, and the policy key capping them
_BUDGETS = {"preempted": ("preemptions", "max_preemptions"), "lost": ("lost_retries", "max_lost")}
_OWN_BUDGET = ("retries", "max_retries")


def retry_counter(failure_class: str) -> str:
    """The job field that counts retries of ``failure_class``."""
    return _BUDGETS.get(failure_class, _OWN_BUDGET)[0]


class RetryPolicy(BaseModel):
    """What happens after an attempt fails, by the failure's class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retry_on: tuple[FailureClass, ...] = INFRASTRUCTURE
    #: retries of the job's own failures (``failed``, ``oom``, ``timeout``) when listed
    max_retries: int = Field(default=3, ge=0)
    #: requeues after a preemption; each resumes from the checkpoint
    max_preemptions: int = Field(default=20, ge=0)
    #: retries after the attempt was lost (its process, node or kernel start)
    max_lost: int = Field(default=3, ge=0)
    initial_s: float = Field(default=10.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_s: float = Field(default=600.0, ge=0)
    #: each delay is cut by a random share of up to this fraction, so jobs that
    #: failed together do not all come back at the same instant
    jitter: float = Field(default=0.5, ge=0, le=1)

    @field_validator("retry_on")
    @classmethod
    def _with_infrastructure(cls, classes: tuple[FailureClass, ...]) -> tuple[FailureClass, ...]:
        return tuple(c for c in FAILURE_CLASSES if c in classes or c in INFRASTRUCTURE)

    def cap(self, failure_class: str) -> int:
        """How many retries ``failure_class`` gets (0 when it is not retried)."""
        if failure_class not in self.retry_on:
            return 0
        return int(getattr(self, _BUDGETS.get(failure_class, _OWN_BUDGET)[1]))

    def backoff_s(self, retries_done: int, rng: random.Random | None = None) -> float:
        """Delay before the next retry: exponential from ``initial_s``, capped at
        ``max_s``, less a random share of up to ``jitter``."""
        delay = min(self.max_s, self.initial_s * self.multiplier**retries_done)
        return delay * (1.0 - self.jitter * (rng or random).random())

    def merged(self, overrides: Mapping[str, Any]) -> RetryPolicy:
        """This policy with a job's overrides applied (each checked)."""
        if not overrides:
            return self
        try:
            return RetryPolicy(**{**self.model_dump(), **overrides})
        except ValidationError as exc:
            raise SpecError(_one_line(exc)) from None


def retry_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """A job's retry overrides, checked against the policy's keys and ranges."""
    overrides = {k: v for k, v in values.items() if v is not None}
    if "retry_on" in overrides:
        classes = overrides["retry_on"]
        if isinstance(classes, str):
            classes = [c.strip() for c in classes.split(",") if c.strip()]
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise SpecError(
                f"retry_on: expected a list of failure classes, got {classes!r}; "
                f"use any of {', '.join(FAILURE_CLASSES)}"
            )
        unknown = [c for c in classes if c not in FAILURE_CLASSES]
        if unknown:
            raise SpecError(
                f"retry_on: {unknown[0]!r} is not a failure class; "
                f"use any of {', '.join(FAILURE_CLASSES)}"
            )
        overrides["retry_on"] = tuple(classes)
    RetryPolicy().merged(overrides)
    return overrides


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])
