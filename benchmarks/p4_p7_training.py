"""P4: step time of the tiny GPT-2 under the nblaunch runtime ÷ the same notebook under
bare papermill (target <= 1.02).
P7: SIGTERM → first training step of the resumed attempt on the local queue
(target <= 10 s), against the cold start → first step of the first attempt."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import papermill

from benchmarks.harness import ROOT, isolated_home, median, report

ROUNDS = 3
STEPS = 300


def bare_step_time(folder: Path) -> float:
    out = folder / "bare.ipynb"
    papermill.execute_notebook(
        str(folder / "01_quickstart.ipynb"),
        str(out),
        parameters={"max_steps": STEPS, "report_to": "", "save_steps": 10_000},
        cwd=str(folder),
        progress_bar=False,
    )
    runtime = re.search(r"'train_runtime': ([0-9.]+)", out.read_text())
    assert runtime is not None
    return float(runtime.group(1)) / STEPS


def nblaunch_step_time(folder: Path) -> float:
    import nblaunch

    job = nblaunch.submit(
        folder / "01_quickstart.ipynb",
        params={"max_steps": STEPS, "report_to": "", "save_steps": 10_000},
    )
    assert job.wait().value == "succeeded", job.logs()
    return job.metrics("train_runtime")[-1]["value"] / STEPS


def resume_latency(folder: Path) -> tuple[float, float]:
    import nblaunch

    job = nblaunch.submit(
        folder / "01_quickstart.ipynb",
        params={"max_steps": 100_000, "report_to": "", "save_steps": 100_000, "logging_steps": 1},
    )
    while not any(r["step"] >= 30 for r in job.metrics("loss")):
        assert not job.row.final, job.logs()
        time.sleep(0.05)
    first = job._store.attempts(job.id)[0]
    cold = job.metrics("loss")[0]["time"] - (first.running_at or 0)
    sent = time.time()
    job.preempt()
    while not any(r["attempt"] == 2 for r in job.metrics("loss")):
        assert not job.row.final, job.logs()
        time.sleep(0.05)
    resumed = next(r for r in job.metrics("loss") if r["attempt"] == 2)["time"] - sent
    if not job.row.final:
        job.cancel()
    job.wait()
    return resumed, cold


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, isolated_home():
        folder = Path(tmp)
        shutil.copy(ROOT / "notebooks" / "01_quickstart.ipynb", folder)
        shutil.copytree(ROOT / "notebooks" / "data", folder / "data")
        ours, bare = [], []
        for _ in range(ROUNDS):  # interleaved so drift hits both alike
            ours.append(nblaunch_step_time(folder))
            bare.append(bare_step_time(folder))
        p4 = median(ours) / median(bare)
        report("P4", "tiny GPT-2 step time under the runtime", median(ours) * 1000, "ms",
               median(bare) * 1000, "bare papermill", "<= 1.02", p4 <= 1.02)  # fmt: skip
        resumed, cold = resume_latency(folder)
        report("P7", "SIGTERM -> first step of the resumed attempt", resumed, "s", cold,
               "cold start -> first step", "<= 10 s", resumed <= 10)  # fmt: skip


if __name__ == "__main__":
    main()
