"""What happens to a job once an attempt has ended: finish, retry after a backoff, or
requeue to resume. The agent applies the decision; this module only makes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nblaunch.queue.rows import JobRow
from nblaunch.queue.states import State
from nblaunch.runners.base import AttemptEnd
from nblaunch.runtime.contract import Outcome


@dataclass(frozen=True)
class Decision:
    """The job's next state, the event's reason, and the job fields that change with it."""

    state: State
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


def backoff_s(base_s: float, retries_done: int) -> float:
    """Delay before the next retry: doubling from ``base_s``."""
    return base_s * (2**retries_done)


def decide(job: JobRow, end: AttemptEnd, now: float) -> Decision:
    """The job's next state once its current attempt ended as ``end``."""
    if job.cancel_requested_at is not None:
        return Decision(State.CANCELLED, "cancelled by request", {"error": None})
    if end.outcome is Outcome.SUCCEEDED:
        return Decision(State.SUCCEEDED, "notebook completed", {"error": None})
    if end.outcome is Outcome.AGENT_DIED:
        # Nothing of the job ran, so this costs no retry.
        return Decision(State.QUEUED, "claimed by an agent that died before starting it")
    what = end.outcome.value.replace("_", " ")
    if end.error and end.error.get("ename"):
        what += f" ({end.error['ename']}: {end.error.get('evalue')})"
    if end.outcome is Outcome.PREEMPTED:
        n = job.preemptions + 1
        if job.preemptions < job.max_preemptions:
            return Decision(
                State.QUEUED,
                f"preempted; requeued to resume (preemption {n})",
                {"preemptions": n, "not_before": 0.0, "error": None},
            )
        return Decision(
            State.PREEMPTED, f"preempted {n} times; no preemption left", {"error": end.error}
        )
    if job.retries < job.max_retries:
        delay = backoff_s(job.retry_backoff_s, job.retries)
        return Decision(
            State.QUEUED,
            f"{what}; retry {job.retries + 1}/{job.max_retries} in {delay:g}s",
            {"retries": job.retries + 1, "not_before": now + delay, "error": end.error},
        )
    return Decision(State(end.outcome.state), what, {"error": end.error})
