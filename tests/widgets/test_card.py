"""JobCard against a real store: states, progress, live loss, GPU, cost, error, buttons."""

from __future__ import annotations

from pathlib import Path

from nblaunch import api
from nblaunch.queue.states import State
from nblaunch.queue.store import Store
from nblaunch.widgets.card import JobCard

from .conftest import add_job, finish, log_metrics, start


def test_card_follows_a_job_from_queued_to_succeeded(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home, "finetune")
    card = JobCard(job, live=False)
    assert 'data-state="queued"' in card.header.value and "#1 in queue local" in card.header.value
    assert card.chart_box.layout.display == "none"  # nothing logged yet
    assert card.bar.layout.visibility == "hidden"

    start(store, job)
    log_metrics(store, job, "max_steps", [100])
    log_metrics(store, job, "loss", [2.0, 1.8, 1.7])
    assert card.refresh() is True
    assert 'data-state="running"' in card.header.value and "attempt 1" in card.header.value
    assert card.chart.series[0]["key"] == "loss" and card.chart.series[0]["count"] == 3
    assert card.chart_box.layout.display is None
    assert card.bar.layout.visibility == "visible" and card.bar.value == 0.02
    assert (
        "step <b>2</b> / 100 (2%)" in card.details.value and "loss <b>1.7</b>" in card.details.value
    )

    log_metrics(store, job, "loss", [1.5, 1.4], start_step=3)
    log_metrics(store, job, "eval_loss", [1.6], start_step=4)
    card.refresh()
    assert [s["key"] for s in card.chart.series] == ["loss", "eval_loss"]
    assert card.chart.series[0]["count"] == 5 and card.chart.series[1]["dash"]
    assert card.metric_picker.options == ("loss", "eval_loss")
    assert card.metric_picker in card.chart_box.children

    finish(store, job)
    assert card.refresh() is True  # takes in late metrics once or twice more
    assert card.refresh() is True
    assert card.refresh() is False
    assert 'data-state="succeeded"' in card.header.value
    assert card.cancel_button.disabled and card.bar.bar_style == "success" and card.bar.value == 1.0
    card.close()


def test_card_after_kernel_restart_shows_the_whole_history(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home)
    start(store, job)
    log_metrics(store, job, "loss", [1.0 / (i + 1) for i in range(30_000)])
    finish(store, job)
    api._store.cache_clear()  # a new kernel: a new connection, a new handle
    card = JobCard(api.Job(job.id, root=nbl_home), live=False)
    assert card.chart.series[0]["count"] == 30_000 and card.chart.points_shown() <= 2000
    assert card.refresh() is True and card.chart.flush() is False


def test_other_metrics_can_be_picked(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home)
    start(store, job)
    log_metrics(store, job, "train/loss", [3.0, 2.0])
    log_metrics(store, job, "learning_rate", [1e-4, 2e-4])
    log_metrics(store, job, "gpu/utilization", [91.0])
    log_metrics(store, job, "gpu/memory_used_gb", [20.5])
    card = JobCard(job, live=False)
    assert card.metric_picker.value == ("train/loss",)
    assert "GPU 91% · 20.5 GB" in card.details.value
    card.metric_picker.value = ("learning_rate", "gpu/utilization")
    assert [s["key"] for s in card.chart.series] == ["learning_rate", "gpu/utilization"]
    log_metrics(store, job, "eval/loss", [2.5], start_step=2)
    card.refresh()  # a new metric does not override the user's choice
    assert card.metric_picker.value == ("learning_rate", "gpu/utilization")
    assert "eval/loss" in card.metric_picker.options


def test_failed_job_shows_its_error(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home)
    start(store, job)
    finish(
        store, job, State.FAILED, {"ename": "RuntimeError", "evalue": "CUDA OOM", "cell_index": 4}
    )
    card = JobCard(job, live=False)
    assert "RuntimeError: CUDA OOM (cell 4)" in card.details.value
    assert card.bar.bar_style == "danger" and card.cancel_button.disabled
    assert "error: RuntimeError: CUDA OOM (cell 4)" in card.text()


def test_cancel_asks_first_then_cancels(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home)
    card = JobCard(job, live=False)
    card.cancel_button.click()
    assert card.confirm_button in card.actions.children and job.state is State.QUEUED
    card.keep_button.click()
    assert card.cancel_button in card.actions.children and job.state is State.QUEUED
    card.cancel_button.click()
    card.confirm_button.click()
    assert job.state is State.CANCELLED and 'data-state="cancelled"' in card.header.value
    assert card.cancel_button in card.actions.children and card.cancel_button.disabled


def test_logs_and_output_buttons(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home)
    card = JobCard(job, live=False)
    card.output_button.click()
    assert "written once the job starts" in card.panel.outputs[0]["data"]["text/html"]
    start(store, job)
    run_dir = job.run_dir
    assert run_dir is not None
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "logs" / "stdout.log").write_text("".join(f"line {i}\n" for i in range(500)))
    (run_dir / "output.ipynb").write_text("{}")
    card.logs_button.value = True
    text = card.panel.outputs[0]["text"]
    assert text.endswith("line 499\n") and "line 400" not in text
    (run_dir / "logs" / "stdout.log").write_text("fresh\n")
    card.refresh()  # the tail follows while it is open
    assert card.panel.outputs[0]["text"] == "fresh\n"
    card.output_button.click()
    assert not card.logs_button.value
    assert str(run_dir / "output.ipynb") in card.panel.outputs[0]["data"]["text/plain"]


def test_cost_so_far_uses_the_queue_price(nbl_home: Path, store: Store) -> None:
    (nbl_home / "queues.toml").write_text("[queues.local]\ngpus = 2\nprice_per_gpu_hour = 3600.0\n")
    job = add_job(nbl_home, gpus=1, options={"estimate": {"cost_usd": 99.0, "hours": 2.0}})
    start(store, job, running_for=60)  # 60 s × 1 GPU × $1 per GPU-second
    card = JobCard(job, live=False)
    assert (
        'class="nbl-cost">$60.0' in card.details.value
        and "estimate $99.00 / 2h 00m" in card.details.value
    )


def test_mimebundle_has_widget_html_and_text(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home, "bundle-me")
    start(store, job)
    log_metrics(store, job, "loss", [3.0, 2.0, 1.0])
    bundle = JobCard(job, live=False)._repr_mimebundle_()
    assert bundle is not None
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith(f"job {job.id} (bundle-me) running")
    assert 'class="nbl-sparkline"' in bundle["text/html"]
