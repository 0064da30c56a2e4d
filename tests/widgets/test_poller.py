"""One poller thread per kernel: refreshes every live widget, stops when they close or end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nblaunch.queue.store import Store
from nblaunch.widgets.card import JobCard
from nblaunch.widgets.poller import Poller, poller

from .conftest import add_job, finish, log_metrics, start


@pytest.fixture(autouse=True)
def fast_poller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller(), "interval", 0.05)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nblaunch-widget-poller"]


def test_one_thread_refreshes_every_card_and_exits_when_jobs_end(
    nbl_home: Path, store: Store
) -> None:
    jobs = [add_job(nbl_home, f"j{i}") for i in range(3)]
    cards = [JobCard(job) for job in jobs]
    assert len(poller_threads()) == 1 and len(poller().views) == 3
    for job in jobs:
        start(store, job)
        log_metrics(store, job, "loss", [1.0, 0.9])
    eventually(lambda: all(c.chart.series and c.chart.series[0]["count"] == 2 for c in cards))
    eventually(lambda: all('data-state="running"' in c.header.value for c in cards))
    for job in jobs:
        finish(store, job)
    assert poller().join(10), "the poller should stop once every job has ended"
    assert poller().views == [] and poller_threads() == []
    assert all('data-state="succeeded"' in c.header.value for c in cards)


def test_closed_cards_are_dropped_and_a_new_card_restarts_the_thread(
    nbl_home: Path, store: Store
) -> None:
    job = add_job(nbl_home)
    card = JobCard(job)
    card.close()
    assert poller().join(10) and poller().views == []
    again = JobCard(job)
    assert poller().running and poller().views == [again]


def test_a_failing_view_is_dropped_and_does_not_stop_the_others() -> None:
    calls = {"bad": 0, "good": 0}

    class View:
        def __init__(self, name: str) -> None:
            self.name, self.closed = name, False

        def refresh(self) -> bool:
            calls[self.name] += 1
            if self.name == "bad":
                raise RuntimeError("store went away")
            return calls["good"] < 8

    p = Poller(interval=0.01)
    p.register(View("bad"))
    p.register(View("good"))
    assert p.join(10)
    assert calls == {"bad": 5, "good": 8} and p.views == []


def test_registering_never_waits_for_a_slow_refresh() -> None:
    release = threading.Event()

    class Slow:
        closed = False

        def refresh(self) -> bool:
            release.wait(5)
            return False

    p = Poller(interval=0.01)
    t0 = time.perf_counter()
    p.register(Slow())
    p.register(Slow())
    assert time.perf_counter() - t0 < 0.5
    release.set()
    assert p.join(10)
