"""Prometheus metrics of one worker, served on ``/metrics`` (``batchml worker --metrics-port``,
on the address ``--metrics-address``: 127.0.0.1 unless told otherwise, so a laptop's worker does
not show its metrics to the whole network; a pod that Prometheus scrapes sets 0.0.0.0).

Each worker owns a private :class:`~prometheus_client.CollectorRegistry` (never the global one,
so two workers in one process, as in the tests, do not mix their counts). Exported:

=========================================  ========  ============================================
``batchml_leases_total``                   counter   items this worker leased
``batchml_items_total{outcome}``           counter   ended attempts: done, failed (will retry),
                                                     dead, released, expired (lease lost)
``batchml_lease_losses_total``             counter   heartbeats the queue refused, or leases
                                                     that expired while the queue was unreachable
``batchml_task_duration_seconds{outcome}`` histogram seconds from lease to the attempt's end
``batchml_heartbeat_lag_seconds``          histogram how late lease renewals ran
``batchml_idle_polls_total``               counter   polls that found nothing leasable
``batchml_worker_busy``                    gauge     1 while an item is in hand
``batchml_worker_info{worker,host}``       gauge     always 1; labels identify the worker
``batchml_queue_items{state}``             gauge     queue depth per state, read at scrape time
``batchml_queue_up``                       gauge     1 if the queue answered the last scrape
``batchml_lineage_version{run}``           gauge     the run's model lineage head (0: untrained),
                                                     read with the depth; only if given a run
``batchml_build_info{version}``            gauge     always 1; batchml's version
``process_*``                              various   the worker process: resident memory, CPU
                                                     seconds, open files (Linux /proc)
=========================================  ========  ============================================

No ``*_created`` series: they double the series count for a timestamp no dashboard here uses
(prometheus_client's switch for that is process-wide; batchml serves no other registry).

The queue depth is the queue's, not the worker's: every worker exports the same numbers (use
``max by (state)`` in queries). It is read with one ``counts()`` call at scrape time, at most
once per ``depth_ttl`` seconds however often Prometheus scrapes, and afresh after this worker
leased or ended an item.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from batchml import __version__
from batchml.errors import BatchmlError, ConfigError
from batchml.queue.base import Lease, Outcome, State, WorkQueue
from batchml.worker.observer import WorkerObserver

log = logging.getLogger("batchml.metrics")

OUTCOMES = tuple(Outcome)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: where ``/metrics`` listens unless told otherwise: this machine only
DEFAULT_ADDRESS = "127.0.0.1"

disable_created_metrics()  # type: ignore[no-untyped-call]


class QueueDepthCollector(Collector):
    """``batchml_queue_items{state}``, ``batchml_queue_up`` and, given a run,
    ``batchml_lineage_version{run}``, asked of the queue at scrape."""

    def __init__(self, queue: WorkQueue, depth_ttl: float = 5.0, run: str | None = None) -> None:
        self.queue = queue
        self.depth_ttl = depth_ttl
        self.run = run
        self._lock = threading.Lock()
        self._cached: dict[State, int] | None = None
        self._version: int | None = None
        self._read_at = -float("inf")

    def invalidate(self) -> None:
        """Read the queue again at the next scrape (this worker just changed it)."""
        with self._lock:
            self._read_at = -float("inf")

    def _counts(self) -> dict[State, int] | None:
        with self._lock:
            if time.monotonic() - self._read_at >= self.depth_ttl:
                try:
                    self._cached = self.queue.counts()
                    if self.run is not None:
                        self._version = self.queue.lineage_head(self.run).version
                except BatchmlError as exc:
                    log.warning("metrics: cannot read the queue depth: %s", exc)
                    self._cached = self._version = None
                self._read_at = time.monotonic()
            return self._cached

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        version = self._version
        up = GaugeMetricFamily("batchml_queue_up", "1 if the queue answered the last depth read.")
        up.add_metric([], 1.0 if counts is not None else 0.0)
        yield up
        if counts is None:
            return
        depth = GaugeMetricFamily(
            "batchml_queue_items", "Items in the queue per state.", labels=["state"]
        )
        for state in State:
            depth.add_metric([state.value], float(counts[state]))
        yield depth
        if self.run is not None and version is not None:
            lineage = GaugeMetricFamily(
                "batchml_lineage_version", "The run's model lineage head.", labels=["run"]
            )
            lineage.add_metric([self.run], float(version))
            yield lineage


class PrometheusObserver(WorkerObserver):
    """Counts what a worker does into its own registry; hooks are cheap and never raise."""

    def __init__(
        self, queue: WorkQueue | None = None, depth_ttl: float = 5.0, run: str | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        build = Gauge("batchml_build_info", "Always 1; batchml's version.", ["version"], registry=r)
        build.labels(version=__version__).set(1)
        self.leases = Counter("batchml_leases", "Items leased by this worker.", registry=r)
        self.items = Counter(
            "batchml_items", "Attempts ended, by outcome.", ["outcome"], registry=r
        )
        self.lease_losses = Counter(
            "batchml_lease_losses", "Leases this worker lost while running an item.", registry=r
        )
        self.duration = Histogram(
            "batchml_task_duration_seconds", "Seconds from lease to the end of an attempt.",
            ["outcome"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.heartbeat_lag = Histogram(
            "batchml_heartbeat_lag_seconds", "How late lease renewals ran.",
            buckets=LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self.idle = Counter("batchml_idle_polls", "Polls that found nothing leasable.", registry=r)
        self.busy = Gauge("batchml_worker_busy", "1 while an item is in hand.", registry=r)
        self.info = Gauge(
            "batchml_worker_info", "Always 1; identifies the worker.", ["worker", "host"],
            registry=r,
        )  # fmt: skip
        for outcome in OUTCOMES:  # every series exists from the start, at zero
            self.items.labels(outcome=outcome)
            self.duration.labels(outcome=outcome)
        self.depth = QueueDepthCollector(queue, depth_ttl, run) if queue is not None else None
        if self.depth is not None:
            r.register(self.depth)

    def on_start(self, worker_id: str) -> None:
        self.info.labels(worker=worker_id, host=socket.gethostname()).set(1)

    def on_lease(self, lease: Lease) -> None:
        self.leases.inc()
        self.busy.set(1)
        if self.depth is not None:
            self.depth.invalidate()

    def on_outcome(self, item_id: str, status: Outcome, seconds: float) -> None:
        self.items.labels(outcome=status).inc()
        self.duration.labels(outcome=status).observe(seconds)
        self.busy.set(0)
        if self.depth is not None:
            self.depth.invalidate()

    def on_heartbeat(self, item_id: str, lag: float) -> None:
        self.heartbeat_lag.observe(lag)

    def on_lease_lost(self, item_id: str) -> None:
        self.lease_losses.inc()

    def on_idle(self) -> None:
        self.idle.inc()


class MetricsServer:
    """``/metrics`` over HTTP for one registry, on a daemon thread, listening on ``host`` only
    (``0.0.0.0``: every interface); ``close`` stops it."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = DEFAULT_ADDRESS) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}; pick another "
                "--metrics-port, or an address of this machine for --metrics-address"
            ) from None
        self.host = host
        self.port = int(self._server.server_port)
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, self.port)

    @property
    def server(self) -> WSGIServer:
        return self._server

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
