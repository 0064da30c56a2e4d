"""What a job actually cost: GPU-seconds × price, over all its attempts.

An attempt holds its GPUs from ``running_at`` to ``finished_at``; an attempt
still running counts up to now, so the figure grows live. Attempts that
never reached ``running`` (failed while starting) held no GPU time worth
pricing.
"""

from __future__ import annotations

import time
from typing import Any

from nblaunch.queue.config import QueueConfig
from nblaunch.queue.states import ACTIVE
from nblaunch.queue.store import JobRow, Store

__all__ = ["actual_cost", "queue_price"]


def queue_price(config: QueueConfig) -> float | None:
    """USD per GPU-hour the queue's jobs pay.

    ``price_per_gpu_hour`` when set; a queue that only sets
    ``spot_price_per_gpu_hour`` runs on spot and pays that.
    """
    if config.price_per_gpu_hour is not None:
        return config.price_per_gpu_hour
    return config.spot_price_per_gpu_hour


def actual_cost(
    store: Store, job_row: JobRow, queue_config: QueueConfig, *, now: float | None = None
) -> dict[str, Any]:
    """GPU-hours and USD a job has used so far, over all attempts.

    Parameters
    ----------
    store
        The store holding the job's attempts.
    job_row
        The job (``job_row.gpus`` is its total GPUs over all nodes).
    queue_config
        The job's queue, for its price.
    now
        Clock for a running attempt (default: ``time.time()``).

    Returns
    -------
    dict
        ``cost_usd`` (None when the queue has no price), ``gpu_hours``,
        ``wall_hours`` (attempt time, whatever the GPU count),
        ``price_per_gpu_hour`` and ``running`` (an attempt is still counting).
        A job that asked for no GPU uses no GPU-hours and costs 0.
    """
    clock = time.time() if now is None else now
    seconds = 0.0
    running = False
    for attempt in store.attempts(job_row.id):
        if attempt.running_at is None:
            continue
        end = attempt.finished_at
        if end is None:
            if attempt.state in ACTIVE and not job_row.final:
                end = clock
                running = True
            else:
                # An attempt the agent closed without a time ended when its job did.
                end = job_row.finished_at or job_row.updated_at
        seconds += max(0.0, end - attempt.running_at)
    gpu_hours = seconds * job_row.gpus / 3600.0
    price = queue_price(queue_config)
    return {
        "cost_usd": None if price is None else gpu_hours * price,
        "gpu_hours": gpu_hours,
        "wall_hours": seconds / 3600.0,
        "price_per_gpu_hour": price,
        "running": running,
    }
