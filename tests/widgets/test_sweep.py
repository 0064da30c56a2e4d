"""SweepBoard: a sweep's curves overlaid, parameters in the legend, best so far marked."""

from __future__ import annotations

from pathlib import Path

from nblaunch.queue.store import Store
from nblaunch.widgets.sweep import SweepBoard

from .conftest import add_job, finish, log_metrics, start


def test_overlays_jobs_labels_by_varying_params_and_marks_the_best(
    nbl_home: Path, store: Store
) -> None:
    jobs = [
        add_job(nbl_home, "sw", sweep_id="s1", params={"lr": lr, "epochs": 3})
        for lr in (1e-3, 3e-4)
    ]
    other = add_job(nbl_home, "unrelated", sweep_id="s2")
    for job, scale in zip(jobs, (1.0, 0.5), strict=True):
        start(store, job)
        log_metrics(store, job, "loss", [scale * v for v in (3.0, 2.0, 1.0)])
    log_metrics(store, other, "loss", [0.001])
    board = SweepBoard("s1", live=False)
    assert [s["label"] for s in board.chart.series] == ["lr=0.001 (running)", "lr=0.0003 (running)"]
    assert board.best is not None and board.best["job"] == jobs[1].id and board.best["y"] == 0.5
    assert board.chart.marks[0]["label"] == "best 0.5" and board.chart.marks[0]["x"] == 2
    assert "best loss <b>0.5</b>" in board.header.value

    log_metrics(store, jobs[0], "eval_loss", [0.9, 0.2], start_step=3)
    finish(store, jobs[0])
    board.refresh(force=True)
    assert board.metric.value == "eval_loss"  # eval loss wins once logged
    assert board.best["job"] == jobs[0].id and board.best["y"] == 0.2
    assert "lr=0.001 (succeeded)" in [s["label"] for s in board.chart.series]
    board.metric.value = "loss"
    assert board.best["y"] == 0.5 and "2 jobs" in board.text()
