"""P6: packing. A mixed 1/2/4-GPU workload of sleeping jobs, each with a time limit, on
a local queue of 8 GPU slots (numbered slots: no GPU is touched). The makespan is
compared with the lower bound for the same jobs, from their own measured run times:
max(total GPU-seconds / 8, the longest job). Target: within 1.10x.

The jobs are submitted in an order that defeats first-fit in strict order: a
4-GPU job waits at the head while smaller ones behind it could run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat

from benchmarks.harness import isolated_home, report

SLOTS = 8
#: (GPUs, seconds asleep)
WORKLOAD = [
    (2, 10), (4, 12), (1, 8), (4, 6), (2, 10), (1, 4), (1, 6), (2, 4),
    (4, 8), (1, 10), (2, 8), (1, 12), (4, 4), (2, 6), (1, 6), (2, 12),
]  # fmt: skip
#: each job's time limit beyond its sleep: kernel start-up and papermill's own work
MARGIN_S = 6.0


def sleeper(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seconds = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import time\ntime.sleep(seconds)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "sleep.ipynb"
    nbformat.write(nb, path)
    return path


def main() -> None:
    import nblaunch

    with tempfile.TemporaryDirectory() as tmp, isolated_home(
        f"[queues.local]\ngpus = {SLOTS}\n"
    ):
        nb = sleeper(Path(tmp))
        jobs = [
            nblaunch.submit(nb, params={"seconds": s}, gpus=g, timeout_s=s + MARGIN_S)
            for g, s in WORKLOAD
        ]
        for job in jobs:
            assert job.wait(timeout=600).value == "succeeded", job.logs()
        spans = []
        for job, (gpus, _) in zip(jobs, WORKLOAD, strict=True):
            (attempt,) = job._store.attempts(job.id)
            assert attempt.running_at is not None and attempt.finished_at is not None
            spans.append((gpus, attempt.running_at, attempt.finished_at))
    makespan = max(end for _, _, end in spans) - min(start for _, start, _ in spans)
    gpu_seconds = sum(g * (end - start) for g, start, end in spans)
    longest = max(end - start for _, start, end in spans)
    bound = max(gpu_seconds / SLOTS, longest)
    report("P6", "packing makespan, mixed 1/2/4-GPU jobs on 8 slots", makespan, "s", bound,
           "lower bound: max(GPU-s / 8, longest job)", "<= 1.10x", makespan <= 1.10 * bound)  # fmt: skip


if __name__ == "__main__":
    main()
