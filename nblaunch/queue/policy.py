"""What happens to a job once an attempt has ended: finish, retry after a backoff, or
requeue to resume. The agent applies the decision; this module only makes it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from nblaunch.queue.rows import JobRow
from nblaunch.queue.states import State
from nblaunch.retry import retry_counter
from nblaunch.runners.base import AttemptEnd
from nblaunch.runtime.contract import Outcome


@dataclass(frozen=True)
class Decision:
    """The job's next state, the event's reason, and the job fields that change with it."""

    state: State
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


def decide(job: JobRow, end: AttemptEnd, now: float, rng: random.Random | None = None) -> Decision:
    """The job's next state once its current attempt ended as ``end``.

    Each failure class retries under its own cap of the job's retry policy:
    preemptions requeue at once (the next attempt resumes from the
    checkpoint); lost attempts and the job's own failures wait a jittered
    exponential backoff, and the job keeps its place by submission order.
    """
    if job.cancel_requested_at is not None:
        return Decision(State.CANCELLED, "cancelled by request", {"error": None})
    if end.outcome is Outcome.SUCCEEDED:
        return Decision(State.SUCCEEDED, "notebook completed", {"error": None})
    if end.outcome is Outcome.AGENT_DIED:
        # Nothing of the job ran, so this costs no retry.
        return Decision(State.QUEUED, "claimed by an agent that died before starting it")
    klass = end.outcome.failure_class or "failed"
    error = {**(end.error or {}), "class": klass}
    what = klass if klass == end.outcome.value else f"{klass} ({end.outcome.value})"
    if end.error and end.error.get("ename"):
        what += f": {end.error['ename']}: {end.error.get('evalue')}"
    policy = job.retry_policy
    cap = policy.cap(klass)
    counter = retry_counter(klass)
    done = getattr(job, counter)
    if done >= cap:
        if cap:
            why = f"all {cap} {klass} retries used"
        elif klass in policy.retry_on:
            why = f"{klass} is not retried (its cap is 0)"
        else:
            why = f"{klass} is not retried (retry_on: {', '.join(policy.retry_on) or 'nothing'})"
        return Decision(State(end.outcome.state), f"{what}; {why}", {"error": error})
    if klass == "preempted":
        return Decision(
            State.QUEUED,
            f"preempted; requeued to resume (preemption {done + 1}/{cap})",
            {counter: done + 1, "not_before": 0.0, "error": None},
        )
    if end.engine_kept:
        # The engine restarts the job by itself (after its own delay): adopt it at once.
        return Decision(
            State.QUEUED,
            f"{what}; requeued by its engine ({klass} retry {done + 1}/{cap})",
            {counter: done + 1, "not_before": 0.0, "error": error},
        )
    delay = policy.backoff_s(done, rng)
    return Decision(
        State.QUEUED,
        f"{what}; {klass} retry {done + 1}/{cap} in {delay:.3g}s",
        {counter: done + 1, "not_before": now + delay, "error": error},
    )
