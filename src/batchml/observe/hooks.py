"""The observers ``batchml worker`` attaches: log context always, Prometheus when asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from batchml.observe.logs import LogContext
from batchml.observe.metrics import DEFAULT_ADDRESS, MetricsServer, PrometheusObserver
from batchml.observe.progress import WorkerProgress
from batchml.queue.base import WorkQueue
from batchml.worker.observer import WorkerObserver


@contextmanager
def worker_observers(
    queue: WorkQueue,
    run: str,
    metrics_port: int | None = None,
    metrics_host: str = DEFAULT_ADDRESS,
    progress_every: float | None = None,
) -> Iterator[list[WorkerObserver]]:
    """Observers for one worker; with a port, ``/metrics`` is served until the block ends.
    The progress line (:class:`batchml.observe.progress.WorkerProgress`) updates every
    ``progress_every`` seconds (None: its default, 1 s on a terminal, 30 s otherwise)."""
    observers: list[WorkerObserver] = [LogContext(run), WorkerProgress(queue, every=progress_every)]
    if metrics_port is None:
        yield observers
        return
    exporter = PrometheusObserver(queue, run=run)
    with MetricsServer(exporter.registry, metrics_port, metrics_host):
        yield [*observers, exporter]
