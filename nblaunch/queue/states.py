"""Job states and the transitions the agent may make between them."""

from __future__ import annotations

from enum import Enum
from functools import cache


class State(str, Enum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PREEMPTED = "preempted"
    LOST = "lost"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


# An attempt that ends failed / preempted / lost with retries left sends the
# job from running straight back to queued (the attempt row keeps why); a job
# only takes one of those states when no retry is left, so they are final.
FINAL = frozenset({State.SUCCEEDED, State.FAILED, State.PREEMPTED, State.LOST, State.CANCELLED})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.STARTING, State.CANCELLED}),
    State.STARTING: frozenset(
        {State.RUNNING, State.QUEUED, State.FAILED, State.LOST, State.CANCELLED}
    ),
    State.RUNNING: frozenset(
        {
            State.SUCCEEDED,
            State.FAILED,
            State.PREEMPTED,
            State.LOST,
            State.QUEUED,
            State.CANCELLED,
        }
    ),
    State.PREEMPTED: frozenset(),
    State.LOST: frozenset(),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}

ACTIVE = frozenset({State.STARTING, State.RUNNING})


@cache
def sources_of(target: State) -> tuple[str, ...]:
    """States from which ``target`` may be reached, as values for SQL ``IN``."""
    return tuple(s.value for s, nxt in TRANSITIONS.items() if target in nxt)
