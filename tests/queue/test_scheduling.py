"""Which job starts next: priority order, GPU jobs block those behind them, CPU jobs
fill CPU slots."""

from __future__ import annotations

from nblaunch.queue.scheduling import Pick, pick


def test_first_fitting_job_gets_the_first_free_devices() -> None:
    assert pick([("a", 2), ("b", 1)], ["GPU-x", "GPU-y", "GPU-z"], 1) == Pick(
        "a", ("GPU-x", "GPU-y")
    )


def test_a_gpu_job_that_does_not_fit_blocks_gpu_jobs_behind_it() -> None:
    assert pick([("big", 3), ("small", 1)], ["1", "3"], 0) is None


def test_cpu_jobs_start_past_a_blocked_gpu_job_while_cpu_slots_are_free() -> None:
    assert pick([("big", 3), ("small", 1), ("cpu", 0)], ["1"], 1) == Pick("cpu", ())
    assert pick([("cpu", 0)], [], 0) is None


def test_nothing_to_pick() -> None:
    assert pick([], ["0"], 4) is None
