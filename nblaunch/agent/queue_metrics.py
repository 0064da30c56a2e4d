"""Queue depth in the Prometheus text format, for autoscalers.

``nblaunch queues --prometheus`` prints it and ``nblaunch agent --metrics-port N``
serves it at ``/metrics``; both render :class:`~nblaunch.snapshots.QueueDepth`
through one collector, so the two never disagree with ``nblaunch queues --json``.
Every metric is a gauge labelled with its ``queue``:

- ``nblaunch_queue_jobs{queue,state}``: jobs by state, every state listed even at 0
- ``nblaunch_queue_gpus_requested{queue}``: GPUs the queued jobs ask for
- ``nblaunch_queue_gpus_in_use{queue}``: GPUs the starting and running jobs hold
- ``nblaunch_queue_oldest_queued_age_seconds{queue}``: the longest wait (0 when none)
- ``nblaunch_queue_desired_workers{queue}``: ``desired_workers`` (``Queue.depth``)
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nblaunch.errors import NBLaunchError
from nblaunch.queue.config import load_queues
from nblaunch.queue.states import State
from nblaunch.queue.store import Store
from nblaunch.snapshots import QueueDepth

__all__ = ["QueueDepthCollector", "home_depths", "prometheus_text", "serve_queue_metrics"]

log = logging.getLogger("nblaunch.agent")

#: the per-queue gauges: name, help text, value
GAUGES: tuple[tuple[str, str, Callable[[QueueDepth], float]], ...] = (
    (
        "nblaunch_queue_gpus_requested",
        "GPUs requested by the queue's queued jobs (GPUs per node x nodes).",
        lambda d: d.gpus_queued,
    ),
    (
        "nblaunch_queue_gpus_in_use",
        "GPUs held by the queue's starting and running jobs.",
        lambda d: d.gpus_in_use,
    ),
    (
        "nblaunch_queue_oldest_queued_age_seconds",
        "How long the queue's longest-waiting queued job has waited (0 when none waits).",
        lambda d: d.oldest_queued_age_s,
    ),
    (
        "nblaunch_queue_desired_workers",
        "Workers the queue wants: ceil((GPUs queued + GPUs in use) / gpus_per_worker), "
        "at least 1 while any job is queued or active, clamped to min_workers..max_workers.",
        lambda d: d.desired_workers,
    ),
)


class QueueDepthCollector(Collector):
    """One gauge family per metric, from the depths ``depths()`` returns at each scrape."""

    def __init__(self, depths: Callable[[], Iterable[QueueDepth]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depths = list(self._depths())
        jobs = GaugeMetricFamily(
            "nblaunch_queue_jobs", "Jobs in the queue by state.", labels=["queue", "state"]
        )
        for depth in depths:
            for state in State:
                jobs.add_metric([depth.name, state.value], depth.counts.get(state.value, 0))
        yield jobs
        for name, help_text, value in GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["queue"])
            for depth in depths:
                family.add_metric([depth.name], value(depth))
            yield family


def _registry(depths: Callable[[], Iterable[QueueDepth]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QueueDepthCollector(depths))
    return registry


def prometheus_text(depths: Sequence[QueueDepth]) -> str:
    """``depths`` in the Prometheus text exposition format."""
    return generate_latest(_registry(lambda: depths)).decode()


def home_depths(root: Path, store: Store) -> list[QueueDepth]:
    """The depth of every queue configured in ``root``, by name."""
    return [QueueDepth.read(store, options) for _, options in sorted(load_queues(root).items())]


def serve_queue_metrics(root: Path, store: Store, host: str, port: int) -> WSGIServer:
    """Serve every queue's depth at ``http://host:port/metrics`` from a daemon thread,
    read afresh at each scrape; ``port`` 0 takes any free port (``server_port`` says
    which). Stop it with ``shutdown()`` and ``server_close()``.

    Raises
    ------
    NBLaunchError
        The address cannot be bound (the port is in use, the host is not this
        machine's), in one line.
    """
    registry = _registry(lambda: home_depths(root, store))
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise NBLaunchError(
                f"cannot serve queue metrics on {where}: the port is in use; "
                "pick another --metrics-port (or stop what holds it)"
            ) from None
        raise NBLaunchError(
            f"cannot serve queue metrics on {where} ({exc.strerror or exc}); "
            "check --metrics-host and --metrics-port"
        ) from None
    log.info("serving queue metrics at http://%s:%d/metrics", host, server.server_port)
    return server
