"""Retry and requeue decisions, one row per case: the job as it stands, how its attempt
ended, and what must happen next."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nblaunch.errors import SpecError
from nblaunch.queue.policy import decide
from nblaunch.queue.rows import JobRow
from nblaunch.queue.states import State
from nblaunch.retry import RetryPolicy, retry_overrides
from nblaunch.runners import AttemptEnd
from nblaunch.runtime.contract import Outcome

NOW = 1_000_000.0
BOOM = {"ename": "ValueError", "evalue": "boom", "cell_index": 2}
OOM = {"ename": "MemoryError", "evalue": "", "cell_index": 1}
#: no jitter, so delays are exact
POLICY = RetryPolicy(max_retries=2, max_lost=2, max_preemptions=3, initial_s=10, jitter=0)
# Naming only the job's own classes keeps preempted and lost retried.
RETRY_FAILED = POLICY.merged({"retry_on": ["failed", "oom"]})

JOB = JobRow(
    seq=1, id="j", name="j", queue="local", state=State.RUNNING, priority=0, gpus=0,
    job_dir=Path("/h/jobs/j"), sweep_id=None, attempt=1, retries=0, preemptions=0,
    not_before=0.0, submitted_at=NOW - 100, started_at=NOW - 90, finished_at=None,
    cancel_requested_at=None, error=None, updated_at=NOW, preempt_requested_at=None,
    retry_policy=POLICY, lost_retries=0, timeout_s=None,
)  # fmt: skip


def err(error: dict[str, Any] | None, klass: str) -> dict[str, Any]:
    return {**(error or {}), "class": klass}


CASES: list[tuple[str, dict[str, Any], AttemptEnd, State, str, dict[str, Any]]] = [
    ("success", {}, AttemptEnd(Outcome.SUCCEEDED), State.SUCCEEDED, "notebook completed",
     {"error": None}),
    ("cancel wins over any end", {"cancel_requested_at": NOW - 1},
     AttemptEnd(Outcome.CELL_ERROR, BOOM), State.CANCELLED, "cancelled by request",
     {"error": None}),
    ("a cell error is not retried unless listed", {}, AttemptEnd(Outcome.CELL_ERROR, BOOM),
     State.FAILED,
     "failed (cell_error): ValueError: boom; failed is not retried (retry_on: preempted, lost)",
     {"error": err(BOOM, "failed")}),
    ("listed: first retry after the initial backoff", {"retry_policy": RETRY_FAILED},
     AttemptEnd(Outcome.CELL_ERROR, BOOM), State.QUEUED,
     "failed (cell_error): ValueError: boom; failed retry 1/2 in 10s",
     {"retries": 1, "not_before": NOW + 10, "error": err(BOOM, "failed")}),
    ("backoff multiplies", {"retry_policy": RETRY_FAILED, "retries": 1},
     AttemptEnd(Outcome.KERNEL_DIED), State.QUEUED,
     "failed (kernel_died); failed retry 2/2 in 20s",
     {"retries": 2, "not_before": NOW + 20, "error": err(None, "failed")}),
    ("no retry left: the attempt's state", {"retry_policy": RETRY_FAILED, "retries": 2},
     AttemptEnd(Outcome.CELL_ERROR, BOOM), State.FAILED,
     "failed (cell_error): ValueError: boom; all 2 failed retries used",
     {"error": err(BOOM, "failed")}),
    ("oom is its own class and fails the job", {}, AttemptEnd(Outcome.OOM, OOM), State.FAILED,
     "oom: MemoryError: ; oom is not retried (retry_on: preempted, lost)",
     {"error": err(OOM, "oom")}),
    ("timeout is its own class", {}, AttemptEnd(Outcome.TIMEOUT), State.FAILED,
     "timeout; timeout is not retried (retry_on: preempted, lost)",
     {"error": err(None, "timeout")}),
    ("lost is retried by default, under its own cap", {"retries": 2},
     AttemptEnd(Outcome.LOST), State.QUEUED, "lost; lost retry 1/2 in 10s",
     {"lost_retries": 1, "not_before": NOW + 10, "error": err(None, "lost")}),
    ("a kernel that never started counts as lost", {},
     AttemptEnd(Outcome.KERNEL_START_FAILED), State.QUEUED,
     "lost (kernel_start_failed); lost retry 1/2 in 10s",
     {"lost_retries": 1, "not_before": NOW + 10, "error": err(None, "lost")}),
    ("lost retries run out", {"lost_retries": 2}, AttemptEnd(Outcome.LOST), State.LOST,
     "lost; all 2 lost retries used", {"error": err(None, "lost")}),
    ("preemption requeues at once, costs no other retry", {"retries": 2},
     AttemptEnd(Outcome.PREEMPTED), State.QUEUED,
     "preempted; requeued to resume (preemption 1/3)",
     {"preemptions": 1, "not_before": 0.0, "error": None}),
    ("preemptions run out", {"preemptions": 3}, AttemptEnd(Outcome.PREEMPTED),
     State.PREEMPTED, "preempted; all 3 preempted retries used",
     {"error": err(None, "preempted")}),
    ("agent died before the start: free requeue", {"retries": 2},
     AttemptEnd(Outcome.AGENT_DIED), State.QUEUED,
     "claimed by an agent that died before starting it", {}),
    ("listing failed keeps preemptions requeued", {"retry_policy": RETRY_FAILED},
     AttemptEnd(Outcome.PREEMPTED), State.QUEUED,
     "preempted; requeued to resume (preemption 1/3)",
     {"preemptions": 1, "not_before": 0.0, "error": None}),
    ("a zero cap turns lost retries off", {"retry_policy": POLICY.merged({"max_lost": 0})},
     AttemptEnd(Outcome.LOST), State.LOST, "lost; lost is not retried (its cap is 0)",
     {"error": err(None, "lost")}),
    ("a lost attempt its engine requeued is adopted at once", {},
     AttemptEnd(Outcome.LOST, engine_kept=True), State.QUEUED,
     "lost; requeued by its engine (lost retry 1/2)",
     {"lost_retries": 1, "not_before": 0.0, "error": err(None, "lost")}),
    ("runner error is the job's failure", {"retry_policy": RETRY_FAILED},
     AttemptEnd(Outcome.RUNNER_ERROR, BOOM), State.QUEUED,
     "failed (runner_error): ValueError: boom; failed retry 1/2 in 10s",
     {"retries": 1, "not_before": NOW + 10, "error": err(BOOM, "failed")}),
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


def test_backoff_is_exponential_capped_and_jittered_down() -> None:
    exact = RetryPolicy(initial_s=5, multiplier=2, max_s=30, jitter=0)
    assert [exact.backoff_s(n) for n in range(5)] == [5.0, 10.0, 20.0, 30.0, 30.0]
    jittered = exact.merged({"jitter": 0.5})
    rng = random.Random(7)
    delays = [jittered.backoff_s(2, rng) for _ in range(200)]
    assert all(10.0 <= d <= 20.0 for d in delays)
    assert max(delays) - min(delays) > 5.0  # spread, not one instant


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"retry_on": "failed,segfault"}, "'segfault' is not a failure class"),
        ({"max_retries": -1}, "max_retries"),
        ({"jitter": 2}, "jitter"),
        ({"backoff": 3}, "backoff"),
        ({"retry_on": 5}, "retry_on: expected a list of failure classes, got 5"),
        ({"retry_on": ["failed", 1]}, "retry_on: expected a list of failure classes"),
    ],
)
def test_bad_overrides_are_one_line(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        retry_overrides(overrides)


def test_retry_on_always_holds_the_infrastructure_classes() -> None:
    assert RETRY_FAILED.retry_on == ("preempted", "lost", "failed", "oom")
    assert (RETRY_FAILED.cap("preempted"), RETRY_FAILED.cap("lost")) == (3, 2)
    assert RETRY_FAILED.cap("timeout") == 0
