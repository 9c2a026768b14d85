"""The observers ``batchml worker`` attaches: log context always, Prometheus when asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from batchml.observe.logs import LogContext
from batchml.observe.metrics import DEFAULT_ADDRESS, MetricsServer, PrometheusObserver
from batchml.queue.base import WorkQueue
from batchml.worker.observer import WorkerObserver


@contextmanager
def worker_observers(
    queue: WorkQueue, run: str, metrics_port: int | None = None, metrics_host: str = DEFAULT_ADDRESS
) -> Iterator[list[WorkerObserver]]:
    """Observers for one worker; with a port, ``/metrics`` is served until the block ends."""
    observers: list[WorkerObserver] = [LogContext(run)]
    if metrics_port is None:
        yield observers
        return
    exporter = PrometheusObserver(queue)
    with MetricsServer(exporter.registry, metrics_port, metrics_host):
        yield [*observers, exporter]
