"""Which queued job of a queue starts next, given the devices and slots free now.

Candidates come in the order they should be served: higher priority first,
then older. A GPU job that does not fit blocks the GPU jobs behind it (a
large job is never starved by a stream of small ones); jobs that need no GPU
still start while CPU slots are free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pick:
    job_id: str
    gpu_ids: tuple[str, ...]


def pick(
    candidates: Iterable[tuple[str, int]], free_gpus: Sequence[str], free_cpu_slots: int
) -> Pick | None:
    """The first ``(job_id, gpus)`` candidate that may start now, with its devices."""
    gpu_blocked = False
    for job_id, gpus in candidates:
        if free_cpu_slots <= 0 and (gpu_blocked or not free_gpus):
            return None  # nothing further down can fit either
        if gpus == 0:
            if free_cpu_slots > 0:
                return Pick(job_id, ())
        elif not gpu_blocked and gpus <= len(free_gpus):
            return Pick(job_id, tuple(free_gpus[:gpus]))
        else:
            gpu_blocked = True
    return None
