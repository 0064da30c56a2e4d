"""Without a widget frontend: useful text; and the in-job path never imports widgets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nblaunch.widgets as widgets
from nblaunch.queue.store import Store

from .conftest import add_job, log_metrics, start


def test_no_frontend_outside_a_kernel() -> None:
    assert widgets.has_widget_frontend() is False


def test_display_job_prints_text(
    nbl_home: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    job = add_job(nbl_home, "plain")
    start(store, job)
    log_metrics(store, job, "loss", [0.5])
    widgets.display_job(job)
    out = capsys.readouterr().out
    assert out.startswith(f"job {job.id} (plain) running, attempt 1") and "loss 0.5" in out


def test_job_mimebundle_without_frontend_is_text_and_static_html(nbl_home: Path) -> None:
    job = add_job(nbl_home, "static")
    bundle = widgets.job_mimebundle(job.id)
    assert set(bundle) == {"text/plain", "text/html"}
    assert (
        "#1 in queue local" in bundle["text/plain"] and 'data-state="queued"' in bundle["text/html"]
    )


def test_factories_build_widgets_without_polling(nbl_home: Path) -> None:
    job = add_job(nbl_home)
    card = widgets.job_card(job)
    status = widgets.queue_status("local")
    board = widgets.sweep_board("nope")
    est = widgets.estimate_widget(params="1B", tokens="1B", gpu="T4", price_per_gpu_hour=0.5)
    from nblaunch.widgets.poller import poller

    assert poller().views == []  # no frontend: nobody would see the updates
    assert isinstance(card, widgets.JobCard) and isinstance(status, widgets.QueueStatus)
    assert isinstance(board, widgets.SweepBoard) and isinstance(est, widgets.CostEstimate)


def test_every_widget_bundles_its_text_and_static_html(nbl_home: Path) -> None:
    add_job(nbl_home, "member", sweep_id="s")
    shown = (
        widgets.QueueStatus("local", live=False),
        widgets.SweepBoard("s", live=False),
        widgets.CostEstimate(params="1B", tokens="1B", gpu="T4"),
    )
    for widget in shown:
        bundle = widget._repr_mimebundle_()
        assert bundle is not None and "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["text/plain"] == widget.text() and bundle["text/html"] == widget.html()
        assert widget.html().startswith("<div")


def test_in_job_imports_stay_free_of_widgets() -> None:
    code = (
        "import sys, nblaunch.runtime, nblaunch.trainers\n"
        "faces = ('nblaunch.widgets', 'ipywidgets', 'anywidget')\n"
        "bad = [m for m in sys.modules if m.startswith(faces)]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
