"""Retry and requeue decisions, one row per case: the job as it stands, how its attempt
ended, and what must happen next."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nblaunch.queue.policy import backoff_s, decide
from nblaunch.queue.rows import JobRow
from nblaunch.queue.states import State
from nblaunch.runners import AttemptEnd
from nblaunch.runtime.contract import Outcome

NOW = 1_000_000.0
BOOM = {"ename": "ValueError", "evalue": "boom", "cell_index": 2}

JOB = JobRow(
    seq=1,
    id="j",
    name="j",
    queue="local",
    state=State.RUNNING,
    priority=0,
    gpus=0,
    job_dir=Path("/h/jobs/j"),
    sweep_id=None,
    max_retries=2,
    retry_backoff_s=10.0,
    max_preemptions=3,
    attempt=1,
    retries=0,
    preemptions=0,
    not_before=0.0,
    submitted_at=NOW - 100,
    started_at=NOW - 90,
    finished_at=None,
    cancel_requested_at=None,
    error=None,
    updated_at=NOW,
    preempt_requested_at=None,
)

CASES: list[tuple[str, dict[str, Any], AttemptEnd, State, str, dict[str, Any]]] = [
    ("success", {}, AttemptEnd(Outcome.SUCCEEDED), State.SUCCEEDED, "notebook completed",
     {"error": None}),
    ("cancel wins over any end", {"cancel_requested_at": NOW - 1}, AttemptEnd(Outcome.CELL_ERROR, BOOM),
     State.CANCELLED, "cancelled by request", {"error": None}),
    ("first retry after base backoff", {}, AttemptEnd(Outcome.CELL_ERROR, BOOM), State.QUEUED,
     "cell error (ValueError: boom); retry 1/2 in 10s",
     {"retries": 1, "not_before": NOW + 10, "error": BOOM}),
    ("backoff doubles", {"retries": 1}, AttemptEnd(Outcome.KERNEL_DIED), State.QUEUED,
     "kernel died; retry 2/2 in 20s", {"retries": 2, "not_before": NOW + 20, "error": None}),
    ("no retry left: the attempt's state", {"retries": 2}, AttemptEnd(Outcome.CELL_ERROR, BOOM),
     State.FAILED, "cell error (ValueError: boom)", {"error": BOOM}),
    ("lost without retries stays lost", {"max_retries": 0}, AttemptEnd(Outcome.LOST), State.LOST,
     "lost", {"error": None}),
    ("preemption requeues at once, costs no retry", {"retries": 2},
     AttemptEnd(Outcome.PREEMPTED), State.QUEUED, "preempted; requeued to resume (preemption 1)",
     {"preemptions": 1, "not_before": 0.0, "error": None}),
    ("preemptions run out", {"preemptions": 3}, AttemptEnd(Outcome.PREEMPTED), State.PREEMPTED,
     "preempted 4 times; no preemption left", {"error": None}),
    ("agent died before the start: free requeue", {"retries": 2}, AttemptEnd(Outcome.AGENT_DIED),
     State.QUEUED, "claimed by an agent that died before starting it", {}),
    ("runner error retried like a failure", {}, AttemptEnd(Outcome.RUNNER_ERROR, BOOM),
     State.QUEUED, "runner error (ValueError: boom); retry 1/2 in 10s",
     {"retries": 1, "not_before": NOW + 10, "error": BOOM}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("job_fields", "end", "state", "reason", "fields"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    job_fields: dict[str, Any],
    end: AttemptEnd,
    state: State,
    reason: str,
    fields: dict[str, Any],
) -> None:
    decision = decide(replace(JOB, **job_fields), end, NOW)
    assert (decision.state, decision.reason, decision.fields) == (state, reason, fields)


def test_backoff_doubles_from_the_base() -> None:
    assert [backoff_s(5.0, n) for n in range(4)] == [5.0, 10.0, 20.0, 40.0]
