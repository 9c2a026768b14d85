"""Prometheus metrics: scraped over HTTP and parsed with the Prometheus text parser."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families

from batchml import __version__, exitcodes
from batchml.cli.main import app
from batchml.errors import ConfigError
from batchml.observe.metrics import MetricsServer, PrometheusObserver, QueueDepthCollector
from batchml.queue.base import (
    ItemSpec,
    LineageHead,
    LineageStep,
    Outcome,
    QueueOptions,
    RetryPolicy,
)
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.worker.loop import Worker
from tests.sample_tasks import SAMPLE_TASKS
from tests.support.cli import batchml_env

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    """Every sample of ``/metrics``, keyed by name and sorted labels."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def item(task: str, name: str, **payload: object) -> ItemSpec:
    return ItemSpec(
        payload={"task": f"tests.sample_tasks:{task}", "name": name, **payload}, id=name
    )


@pytest.fixture
def queue(tmp_path: Path) -> SqliteQueue:
    retry = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_factor=1.0)
    return SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=retry))


def test_worker_counts_are_served_and_parse(queue: SqliteQueue, tmp_path: Path) -> None:
    """Given two good items and a poison one, when a worker drains the queue, then /metrics
    counts 2 done, 1 failed then dead, 4 leases, and the queue depth per state."""
    queue.push([item("write_output", "a"), item("always_fail", "p"), item("write_output", "b")])
    settings = Settings(
        root=tmp_path / "root",
        worker=WorkerSettings(lease_ttl=5, poll_interval=0.02),
        tasks=SAMPLE_TASKS,
    )
    exporter = PrometheusObserver(queue, depth_ttl=0.0)
    with MetricsServer(exporter.registry, 0, "127.0.0.1") as server:
        worker = Worker(queue, settings.storage(), settings, "w-metrics", [exporter])
        assert worker.run() == exitcodes.DEAD_ITEMS
        m = scrape(server.port)
    assert m[("batchml_leases_total", ())] == 4
    assert m[("batchml_items_total", (("outcome", "done"),))] == 2
    assert m[("batchml_items_total", (("outcome", "failed"),))] == 1
    assert m[("batchml_items_total", (("outcome", "dead"),))] == 1
    assert m[("batchml_items_total", (("outcome", "expired"),))] == 0
    assert m[("batchml_task_duration_seconds_count", (("outcome", "done"),))] == 2
    assert m[("batchml_task_duration_seconds_bucket", (("le", "+Inf"), ("outcome", "dead")))] == 1
    assert m[("batchml_queue_items", (("state", "done"),))] == 2
    assert m[("batchml_queue_items", (("state", "dead"),))] == 1
    assert m[("batchml_queue_items", (("state", "ready"),))] == 0
    assert m[("batchml_queue_up", ())] == 1
    assert m[("batchml_worker_busy", ())] == 0
    info = [k for k in m if k[0] == "batchml_worker_info"]
    assert info and dict(info[0][1])["worker"] == "w-metrics"


def test_lease_losses_and_heartbeat_lag_are_counted() -> None:
    exporter = PrometheusObserver()
    exporter.on_heartbeat("x", 0.0)
    exporter.on_heartbeat("x", 3.0)
    exporter.on_lease_lost("x")
    exporter.on_outcome("x", Outcome.EXPIRED, 12.0)
    reg = exporter.registry
    assert reg.get_sample_value("batchml_lease_losses_total") == 1
    assert reg.get_sample_value("batchml_heartbeat_lag_seconds_count") == 2
    assert reg.get_sample_value("batchml_heartbeat_lag_seconds_sum") == 3.0
    assert reg.get_sample_value("batchml_heartbeat_lag_seconds_bucket", {"le": "2.5"}) == 1
    assert reg.get_sample_value("batchml_items_total", {"outcome": "expired"}) == 1
    assert reg.get_sample_value("batchml_queue_items", {"state": "done"}) is None  # no queue


def test_queue_depth_is_read_at_most_once_per_ttl_and_reports_an_outage(
    queue: SqliteQueue,
) -> None:
    calls = []
    real = queue.counts

    def counting() -> object:
        calls.append(1)
        return real()

    queue.counts = counting  # type: ignore[method-assign,assignment]
    collector = QueueDepthCollector(queue, depth_ttl=60.0)
    for _ in range(3):
        list(collector.collect())
    assert len(calls) == 1
    collector.invalidate()  # the worker leased or ended an item
    list(collector.collect())
    assert len(calls) == 2

    def unavailable() -> object:
        from batchml.errors import QueueUnavailable

        raise QueueUnavailable("down")

    queue.counts = unavailable  # type: ignore[method-assign,assignment]
    collector.depth_ttl = 0.0
    families = {f.name: f for f in collector.collect()}
    assert families["batchml_queue_up"].samples[0].value == 0
    assert "batchml_queue_items" not in families


def _answers(host: str, port: int) -> bool:
    """Whether anything accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_metrics_listen_on_the_given_address_and_no_other() -> None:
    """Given the address 127.0.0.2 (Linux routes all of 127/8 to loopback), /metrics answers
    there, and nothing listens on that port at 127.0.0.1."""
    exporter = PrometheusObserver()
    with MetricsServer(exporter.registry, 0, "127.0.0.2") as server:
        assert server.server.server_address[0] == "127.0.0.2"
        assert ("batchml_leases_total", ()) in scrape(server.port, "127.0.0.2")
        assert not _answers("127.0.0.1", server.port)


def test_metrics_listen_on_this_machine_only_unless_told_otherwise() -> None:
    """The default address is loopback: not every interface (0.0.0.0 would answer on
    127.0.0.2 too), neither for MetricsServer nor for ``batchml worker``."""
    exporter = PrometheusObserver()
    with MetricsServer(exporter.registry, 0) as server:
        assert server.server.server_address[0] == "127.0.0.1"
        assert _answers("127.0.0.1", server.port)
        assert not _answers("127.0.0.2", server.port)
    command = typer.main.get_command(app)
    worker = command.commands["worker"]  # type: ignore[attr-defined]
    (option,) = [p for p in worker.params if p.name == "metrics_address"]
    assert option.default == "127.0.0.1" and option.envvar == "BATCHML_METRICS_ADDRESS"


def test_an_address_that_is_not_this_machines_is_a_configuration_error() -> None:
    exporter = PrometheusObserver()
    with pytest.raises(ConfigError, match=r"192\.0\.2\.1:0.*--metrics-address"):
        MetricsServer(exporter.registry, 0, "192.0.2.1")  # TEST-NET-1: never local


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_worker_command_serves_metrics_while_it_works(queue: SqliteQueue, tmp_path: Path) -> None:
    """``batchml worker --metrics-port`` (via BATCHML_METRICS_PORT) serves /metrics while busy,
    on the address BATCHML_METRICS_ADDRESS names and no other."""
    queue.push([item("slow_write", "slow", seconds=2.0), item("write_output", "quick")])
    queue.close()
    (tmp_path / "root").mkdir()  # a worker refuses a storage root that does not exist
    port = _free_port()
    env = {
        **os.environ,
        "BATCHML_METRICS_PORT": str(port),
        "BATCHML_METRICS_ADDRESS": "127.0.0.2",
        "PYTHONPATH": batchml_env()["PYTHONPATH"],
        "BATCHML_TASKS": "tests.sample_tasks",
    }
    cmd = [
        sys.executable, "-m", "batchml", "--root", str(tmp_path / "root"),
        "--queue", queue.url, "worker", "--worker-id", "w-cli", "--poll", "0.05",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        seen: Samples = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                seen = scrape(port, "127.0.0.2")
            except OSError:
                time.sleep(0.1)
                continue
            leased = seen.get(("batchml_queue_items", (("state", "leased"),)))
            if seen.get(("batchml_worker_busy", ())) == 1 and leased == 1:
                break
            time.sleep(0.05)
        assert seen.get(("batchml_worker_busy", ())) == 1, proc.stderr
        assert seen[("batchml_leases_total", ())] >= 1
        assert seen[("batchml_queue_items", (("state", "leased"),))] == 1
        assert seen[("batchml_queue_items", (("state", "ready"),))] == 1
        assert not _answers("127.0.0.1", port)  # BATCHML_METRICS_ADDRESS, and no other
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == exitcodes.OK, err
    assert f"serving Prometheus metrics on http://127.0.0.2:{port}/metrics" in err


def test_lineage_version_build_info_and_process_memory_are_exported_without_created(
    queue: SqliteQueue,
) -> None:
    """The dashboard's lineage, version and memory panels read these (deploy/monitoring/)."""
    queue.push([item("noop", "t1")])
    exporter = PrometheusObserver(queue, depth_ttl=0.0, run="r")
    with MetricsServer(exporter.registry, 0, "127.0.0.1") as server:
        assert scrape(server.port)[("batchml_lineage_version", (("run", "r"),))] == 0
        lease = queue.lease("w", 30)
        assert lease is not None
        step = LineageStep(0, LineageHead(run="r", version=1, dataset="d1"))
        queue.complete(lease.item.id, lease.token, lineage=step)
        exporter.on_outcome(lease.item.id, "done", 0.1)  # as the worker does: read afresh
        m = scrape(server.port)
    assert m[("batchml_lineage_version", (("run", "r"),))] == 1
    assert m[("batchml_build_info", (("version", __version__),))] == 1
    assert m[("process_resident_memory_bytes", ())] > 0
    assert not [name for name, _ in m if name.endswith("_created")]
    # without a run (or a queue) there is no lineage to report
    bare = PrometheusObserver(queue, depth_ttl=0.0)
    assert bare.registry.get_sample_value("batchml_lineage_version", {"run": "r"}) is None
