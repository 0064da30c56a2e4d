"""Which job starts next (priority order, EASY backfill, best-fit devices) and which
running jobs make way for a higher priority."""

from __future__ import annotations

from nblaunch.queue.scheduling import Pick, Running, Waiting, best_fit, pick, victims

NOW = 1000.0


def w(job_id: str, gpus: int, limit: float | None = None, priority: int = 0) -> Waiting:
    return Waiting(job_id, priority, gpus, limit)


def r(job_id: str, gpus: int, ends_in: float | None, priority: int = 0, ran: float = 100.0,
      stopping: bool = False) -> Running:  # fmt: skip
    ends = None if ends_in is None else NOW + ends_in
    return Running(job_id, priority, gpus, ends, NOW - ran, stopping)


def test_first_fitting_job_gets_a_best_fit_run_of_devices() -> None:
    assert pick([w("a", 2), w("b", 1)], ["0", "1", "2"], 1, [], NOW) == Pick("a", ("0", "1"))
    # 1 GPU goes to the lone free device, keeping the pair 4,5 whole
    assert pick([w("a", 1)], ["0", "4", "5"], 1, [], NOW) == Pick("a", ("0",))
    assert best_fit(["0", "2", "3", "5", "6", "7"], 2) == ("2", "3")
    assert best_fit(["0", "2", "4"], 2) == ("0", "2")  # no run holds 2: first free


def test_a_blocked_job_without_known_ends_blocks_gpu_jobs_behind_it() -> None:
    running = [r("x", 2, None)]
    assert pick([w("big", 3), w("small", 1, limit=5)], ["1", "3"], 0, running, NOW) is None


def test_backfill_a_job_that_ends_before_the_reservation() -> None:
    # big needs 4; x frees 2 more in 100 s; small (limit 50 s) ends before that
    running = [r("x", 2, ends_in=100)]
    cands = [w("big", 4), w("small", 2, limit=50)]
    assert pick(cands, ["2", "3"], 0, running, NOW) == Pick("small", ("2", "3"))


def test_no_backfill_that_would_delay_the_reservation() -> None:
    running = [r("x", 2, ends_in=100)]
    cands = [w("big", 4), w("long", 2, limit=500), w("unbounded", 1)]
    assert pick(cands, ["2", "3"], 0, running, NOW) is None


def test_backfill_on_devices_the_reserved_job_will_not_need() -> None:
    # 8 devices: x holds 4 until +100; big needs 6 then, leaving 2 extra
    running = [r("x", 4, ends_in=100)]
    cands = [w("big", 6), w("unbounded", 2)]
    free = ["4", "5", "6", "7"]
    assert pick(cands, free, 0, running, NOW) == Pick("unbounded", ("4", "5"))
    # ...but not 3, which would take one the reserved job needs
    assert pick([w("big", 6), w("three", 3)], free, 0, running, NOW) is None


def test_cpu_jobs_start_past_a_blocked_gpu_job_while_cpu_slots_are_free() -> None:
    cands = [w("big", 3), w("small", 1), w("cpu", 0)]
    assert pick(cands, ["1"], 1, [], NOW) == Pick("cpu", ())
    assert pick([w("cpu", 0)], [], 0, [], NOW) is None


def test_nothing_to_pick() -> None:
    assert pick([], ["0"], 4, [], NOW) is None


def test_victims_lowest_priority_most_recent_first() -> None:
    head = w("urgent", 2, priority=100)
    running = [
        r("old-low", 1, None, priority=-10, ran=500),
        r("new-low", 1, None, priority=-10, ran=200),
        r("normal", 1, None, priority=0, ran=300),
        r("high", 1, None, priority=100, ran=900),
    ]
    chosen = victims(head, 0, running, NOW, min_runtime_s=60)
    assert [v.job_id for v in chosen] == ["new-low", "old-low"]


def test_no_victims_of_equal_priority_too_young_or_already_enough_stopping() -> None:
    head = w("urgent", 1, priority=100)
    assert victims(head, 0, [r("peer", 1, None, priority=100)], NOW, 60) == []
    assert victims(head, 0, [r("young", 1, None, ran=10)], NOW, 60) == []
    stopping = [r("going", 1, None, stopping=True), r("other", 1, None)]
    assert victims(head, 0, stopping, NOW, 60) == []


def test_no_victims_when_preempting_all_would_not_be_enough() -> None:
    head = w("huge", 4, priority=100)
    assert victims(head, 1, [r("a", 1, None), r("b", 1, None, priority=200)], NOW, 0) == []


def test_cpu_victims_free_cpu_slots() -> None:
    head = w("critical", 0, priority=100)
    chosen = victims(head, 0, [r("gpu", 1, None), r("cpu", 0, None)], NOW, 0)
    assert [v.job_id for v in chosen] == ["cpu"]
