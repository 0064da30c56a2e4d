"""Rendering functions: snapshots in, HTML and text out; no store, no frontend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nblaunch.queue.states import State
from nblaunch.retry import RetryPolicy
from nblaunch.runtime.contract import Cost
from nblaunch.snapshots import JobError, JobSnapshot, Progress, QueueSnapshot
from nblaunch.widgets import render, render_estimate

NOW = 1_800_000_000.0


def snap(**over: Any) -> JobSnapshot:
    base: dict[str, Any] = {
        "id": "ab12cd34",
        "name": "gpt2-finetune",
        "queue": "a100",
        "state": State.RUNNING,
        "priority": 10,
        "gpus": 4,
        "attempt": 2,
        "retries": 1,
        "retry_policy": RetryPolicy(),
        "not_before": 0.0,
        "timeout_s": None,
        "preemptions": 1,
        "sweep_id": None,
        "queue_position": None,
        "submitted_at": NOW - 900,
        "started_at": NOW - 600,
        "finished_at": None,
        "error": None,
        "run_dir": Path("/h/jobs/ab12cd34/attempts/2"),
        "progress": Progress(step=250, max_steps=1000, fraction=0.25, eta_s=1800.0),
        "latest": {
            "loss": 1.23456,
            "eval_loss": 1.5,
            "gpu/utilization": 87.0,
            "gpu/memory_used_gb": 21.34,
        },
        "cost": Cost(gpu_hours=1.4, wall_hours=0.35, price_per_gpu_hour=3.0, running=True),
        "estimate": None,
        "taken_at": NOW,
    }
    base.update(over)
    return JobSnapshot(**base)


def test_formatting() -> None:
    assert [render.fmt_duration(s) for s in (None, 0, 45, 192, 7500, 3 * 86400 + 4 * 3600)] == [
        "—",
        "0s",
        "45s",
        "3m 12s",
        "2h 05m",
        "3d 4h",
    ]
    assert [render.fmt_usd(v) for v in (None, 0.0, 0.001, 4.2, 1234.5)] == [
        "—",
        "$0.00",
        "<$0.01",
        "$4.20",
        "$1,234.50",
    ]
    assert render.fmt_number(0.00001234) == "1.23e-05" and render.fmt_number(1.23456) == "1.235"


def test_running_card_shows_attempt_timing_losses_gpu_and_cost() -> None:
    header = render.job_header_html(snap())
    assert 'data-state="running"' in header and ">running</span>" in header
    assert "gpt2-finetune" in header and "ab12cd34" in header
    assert "attempt 2 (1 preemption)" in header and "4 GPUs" in header
    details = render.job_details_html(snap())
    for text in (
        "elapsed <b>10m 00s</b>",
        "ETA <b>30m 00s</b>",
        "step <b>250</b> / 1000 (25%)",
        "loss <b>1.235</b>",
        "eval_loss <b>1.5</b>",
        "GPU 87% · 21.3 GB",
        "$4.20</b> so far",
        "~$16.80 at completion",
    ):
        assert text in details, text


def test_queued_card_shows_place_in_queue_and_no_timing() -> None:
    s = snap(
        state=State.QUEUED,
        attempt=0,
        queue_position=3,
        started_at=None,
        progress=Progress(),
        cost=None,
        latest={},
    )
    assert "#3 in queue a100" in render.job_header_html(s)
    assert "elapsed" not in render.job_details_html(s)
    assert render.job_text(s).startswith("job ab12cd34 (gpt2-finetune) queued, #3 in queue a100")


def test_failed_card_shows_the_error_and_the_estimate() -> None:
    s = snap(
        state=State.FAILED,
        finished_at=NOW - 60,
        error=JobError("ValueError", "bad <lr>", 3),
        estimate={"cost_usd": 12.0, "hours": 3.0},
    )
    html = render.job_details_html(s)
    assert "ValueError: bad &lt;lr&gt; (cell 3)" in html and "elapsed <b>9m 00s</b>" in html
    assert "estimate $12.00 / 3h 00m" in html and "at completion" not in html
    assert "error: ValueError: bad <lr> (cell 3)" in render.job_text(s)


def test_html_escapes_user_text() -> None:
    html = render.job_card_html(snap(name="<script>x</script>"))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_card_html_has_progress_bar_and_sparkline() -> None:
    html = render.job_card_html(snap(), curve=([0, 1, 2], [3.0, 2.0, 1.5]))
    assert "width:25.0%" in html and 'class="nbl-sparkline"' in html
    assert render.sparkline_svg([0], [1.0]) == ""


def test_job_text_lines() -> None:
    text = render.job_text(snap())
    assert text.splitlines()[0] == "job ab12cd34 (gpt2-finetune) running, attempt 2 (1 preemption)"
    assert "step 250/1000 · elapsed 10m 00s · ETA 30m 00s · loss 1.235 · eval_loss 1.5" in text
    assert "GPU 87% · 21.3 GB" in text and "cost $4.20 so far" in text and "output.ipynb" in text


def test_queue_table_and_text() -> None:
    rows = (
        snap(
            id="j1",
            name="a",
            priority=0,
            gpus=3,
            started_at=NOW - 75,
            cost=Cost(gpu_hours=0.5, wall_hours=0.02, price_per_gpu_hour=3.0),
        ),
        snap(
            id="j2",
            name="b",
            state=State.QUEUED,
            gpus=2,
            attempt=0,
            queue_position=1,
            started_at=None,
            cost=None,
        ),
    )
    queue = QueueSnapshot(
        name="local",
        runner="local",
        gpu_slots=4,
        gpus_used=3,
        counts={"running": 1, "queued": 1},
        jobs=rows,
        filter="all",
        taken_at=NOW,
    )
    html = render.queue_table_html(queue)
    assert "GPUs <b>3/4</b> in use" in html and "1 running · 1 queued" in html
    assert html.count('class="nbl-queue-row"') == 2 and 'data-job="j2"' in html
    assert "1m 15s" in html and "$1.50" in html and "#1" in html
    text = render.queue_text(queue)
    assert text.splitlines()[0] == "queue local (local), GPUs 3/4 in use"
    assert "j2" in text and "#1" in text
    empty = QueueSnapshot("local", "local", 4, 0, {}, (), "queued", NOW)
    assert "no queued jobs" in render.queue_table_html(empty)


def test_jobs_table_is_one_table_for_every_face() -> None:
    table = render.jobs_table([snap(), snap(id="j2", state=State.QUEUED, queue_position=2)], NOW)
    lines = table.splitlines()
    assert lines[0].split() == [
        "id", "name", "queue", "state", "priority", "gpus", "attempt", "place", "submitted"
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["ab12cd34", "gpt2-finetune", "a100", "running"]
    assert "#2" in lines[2] and lines[2].endswith("15m ago")
    assert render.jobs_table([]) == "no jobs"


def test_estimate_html_on_demand_spot_and_verdict() -> None:
    est = {
        "hours": 2.5,
        "cost_usd": 40.0,
        "spot_hours": 3.0,
        "spot_cost_usd": 15.0,
        "mfu": 0.4,
        "mfu_source": "default for hopper",
        "memory_per_gpu_gb": 90.5,
        "fits": False,
        "suggestion": "use fsdp",
        "notes": ["no calibration"],
    }
    html = render_estimate.estimate_html(est, gpus=8, gpu="H100-SXM")
    assert ">$40.00</span>" in html and "2h 30m" in html and "8× H100-SXM" in html
    assert "spot: $15.00" in html and "40% MFU" in html and "does not fit" in html
    assert "use fsdp" in html and "no calibration" in html
    assert ">$15.00</span>" in render_estimate.estimate_html(est, spot=True)
    assert render_estimate.estimate_text(est).startswith(
        "estimate: $40.00 (on-demand), 2h 30m at 40% MFU"
    )


def test_params_label_lists_varying_keys() -> None:
    assert render.params_label({"lr": 0.0003, "bs": 32}, ["lr"]) == "lr=0.0003"
    assert render.params_label({"lr": 0.0003, "bs": 32}) == "bs=32, lr=0.0003"


def test_a_job_its_engine_holds_back_says_why_everywhere() -> None:
    held = snap(
        state=State.STARTING,
        attempt=1,
        preemptions=0,
        started_at=None,
        runner="slurm",
        external_id="4242",
        pending_reason="Priority",
    )
    assert held.where == "attempt 1, slurm job 4242, pending: Priority"
    assert "slurm job 4242" in render.job_header_html(held)
    assert "pending: Priority" in render.job_header_html(held)
    assert "pending: Priority" in render.jobs_table([held], now=NOW)
    assert "pending: Priority" in render.queue_row_html(held, now=NOW)
    assert held.to_dict()["external_id"] == "4242"
    assert held.to_dict()["pending_reason"] == "Priority"
    started = snap(runner="slurm", external_id="4242")
    assert started.where == "attempt 2 (1 preemption), slurm job 4242"
    assert "pending" not in render.jobs_table([started], now=NOW)
