"""P6: packing. A mixed 1/2/4-GPU workload of sleeping jobs, each with a time limit, on
a local queue of 8 GPU slots (numbered slots: no GPU is touched). The makespan is
compared with the lower bound for the same jobs, from their own measured run times:
max(total GPU-seconds / 8, the longest job). Target: within 1.10x.

The jobs are submitted in an order that defeats first-fit in strict order: a
4-GPU job waits at the head while smaller ones behind it could run."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from benchmarks.harness import isolated_home, notebook, report

SLOTS = 8
#: (GPUs, seconds asleep): 40 jobs, a seeded mix of sizes and lengths
_RNG = random.Random(6)
WORKLOAD = [(_RNG.choice((1, 1, 2, 2, 4)), _RNG.choice((5, 10, 15, 20))) for _ in range(40)]
#: a job's time limit is its sleep plus this many times the start-up overhead of one
#: job measured first in the same run (eight start at once on few cores)
MARGIN_FACTOR = 4.0


def main() -> None:
    import nblaunch

    with tempfile.TemporaryDirectory() as tmp, isolated_home(f"[queues.local]\ngpus = {SLOTS}\n"):
        nb = notebook(Path(tmp) / "sleep.ipynb", "seconds = 1", "import time\ntime.sleep(seconds)")
        probe = nblaunch.submit(nb, params={"seconds": 0}, gpus=1)
        assert probe.wait(timeout=300).value == "succeeded", probe.logs()
        (first,) = probe._store.attempts(probe.id)
        assert first.running_at is not None and first.finished_at is not None
        margin = MARGIN_FACTOR * (first.finished_at - first.running_at)
        jobs = [
            nblaunch.submit(nb, params={"seconds": s}, gpus=g, timeout_s=s + margin)
            for g, s in WORKLOAD
        ]
        for job in jobs:
            assert job.wait(timeout=900).value == "succeeded", job.status_line()
        spans = []
        for job, (gpus, _) in zip(jobs, WORKLOAD, strict=True):
            (attempt,) = job._store.attempts(job.id)
            assert attempt.running_at is not None and attempt.finished_at is not None
            spans.append((gpus, attempt.running_at, attempt.finished_at))
    makespan = max(end for _, _, end in spans) - min(start for _, start, _ in spans)
    gpu_seconds = sum(g * (end - start) for g, start, end in spans)
    longest = max(end - start for _, start, end in spans)
    bound = max(gpu_seconds / SLOTS, longest)
    report(
        "P6", "packing makespan, 40 mixed 1/2/4-GPU jobs on 8 slots", makespan, "s", bound,
        "lower bound: max(GPU-s / 8, longest job)", "<= 1.10x", makespan <= 1.10 * bound,
    )  # fmt: skip


if __name__ == "__main__":
    main()
