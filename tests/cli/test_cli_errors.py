"""Every expected failure of the real CLI (a child process) is one line with a documented exit
code (README "Exit codes"); a typo in a path never reads as an empty root or queue."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.queue.base import ItemSpec, State
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.cli import Result, run_batchml, start_batchml


def one_line(result: Result) -> str:
    """The only line on stderr (asserting there is one, and no traceback)."""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def queued(root: Path, *specs: ItemSpec) -> SqliteQueue:
    queue = SqliteQueue(root / "queue.db")
    queue.push(list(specs))
    return queue


def task(name: str, item_id: str, **payload: object) -> ItemSpec:
    body = {"task": f"tests.sample_tasks:{name}", "name": item_id, **payload}
    return ItemSpec(payload=body, id=item_id)


READERS = [
    ["worker"],
    ["worker", "--check"],
    ["queue", "status"],
    ["queue", "requeue-dead"],
    ["report"],
    ["data", "list"],
    ["fraud", "evaluate"],
]


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_commands_that_read_refuse_a_root_that_does_not_exist(
    tmp_path: Path, args: list[str]
) -> None:
    """Given a mistyped --root, when a command that reads runs, then it exits 78 naming the
    root and creates nothing (the old worker created the root and a queue, logged "Queue empty,
    exiting" and exited 0)."""
    root = tmp_path / "dat"
    result = run_batchml("--root", str(root), *args)
    assert result.code == exitcodes.CONFIG, result.err
    assert one_line(result) == (
        f"configuration error: storage root {root} does not exist: check --root / "
        "BATCHML_ROOT or the volume mount"
    )
    assert not root.exists()


def test_a_root_without_a_queue_is_not_given_an_empty_one(tmp_path: Path) -> None:
    """Given a root that exists but holds no queue, when the worker or ``queue status`` runs,
    then it exits 78 naming the missing file, which is not created."""
    for args in (["worker"], ["queue", "status"]):
        result = run_batchml("--root", str(tmp_path), *args)
        assert result.code == exitcodes.CONFIG, result.err
        assert f"no queue at {tmp_path / 'queue.db'}" in one_line(result)
        assert not (tmp_path / "queue.db").exists()


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    """``--log-level LOUD`` exits 2 with one line (the old CLI: a ValueError traceback, exit 1)."""
    result = run_batchml("--root", str(tmp_path), "--log-level", "LOUD", "queue", "status")
    assert result.code == exitcodes.USAGE
    line = one_line(result)
    assert line.startswith("usage error:") and "--log-level" in line and "'LOUD'" in line
    assert run_batchml("--log-level", "debug", "--help").code == exitcodes.OK


def test_a_metrics_port_out_of_range_is_a_configuration_error(tmp_path: Path) -> None:
    """``BATCHML_METRICS_PORT=99999`` exits 78 with one line (the old worker: an OverflowError
    traceback from bind, exit 1)."""
    queued(tmp_path, task("noop", "n1")).close()
    result = run_batchml("--root", str(tmp_path), "worker", env={"BATCHML_METRICS_PORT": "99999"})
    assert result.code == exitcodes.CONFIG, result.err
    assert "BATCHML_METRICS_PORT 99999 is not a TCP port" in one_line(result)
    assert SqliteQueue(tmp_path / "queue.db").get("n1").state == State.READY


def test_a_metrics_port_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    """A port another process listens on: one line, exit 78 (already so before this change;
    kept here beside the out-of-range port, as the README documents both)."""
    queued(tmp_path, task("noop", "n1")).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_batchml(
            "--root", str(tmp_path), "--log-level", "ERROR", "worker", "--metrics-port",
            str(port),
        )  # fmt: skip
    assert result.code == exitcodes.CONFIG, result.err
    assert f"cannot serve metrics on 127.0.0.1:{port}" in one_line(result)


def _damage(path: Path, offset: int) -> None:
    """Overwrite the file from ``offset`` on with garbage (the same length)."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(bytes((i * 37 + 11) % 251 for i in range(size - offset)))


@pytest.mark.parametrize(
    ("offset", "sqlite_says"),
    [(0, "file is not a database"), (4096, "database disk image is malformed")],
    ids=["header", "pages"],
)
def test_a_damaged_queue_database_is_data_loss(
    tmp_path: Path, offset: int, sqlite_says: str
) -> None:
    """Given a queue.db whose header or pages are garbage, when ``queue status`` or the worker
    opens it, then each exits 65 with one line naming the file (the old CLI: a traceback or
    "queue unavailable" exit 69, which a Job retries, and a worker retrying for --queue-retry)."""
    db = tmp_path / "queue.db"
    queued(tmp_path, *(task("noop", f"n{k}", blob="x" * 2000) for k in range(20))).close()
    _damage(db, offset)
    status = run_batchml("--root", str(tmp_path), "queue", "status")
    assert status.code == exitcodes.DATA_LOSS, status.err
    line = one_line(status)
    assert line.startswith(f"queue data lost: the SQLite queue {db} is damaged ({sqlite_says})")
    worker = run_batchml(
        "--root", str(tmp_path), "--log-level", "ERROR", "worker", "--queue-retry", "1"
    )
    assert worker.code == exitcodes.DATA_LOSS, worker.err
    assert f"the SQLite queue {db} is damaged" in one_line(worker)


@pytest.mark.timeout(60)
def test_sigint_stops_a_worker_with_exit_130_and_releases_its_item(tmp_path: Path) -> None:
    """Given a worker busy on a long item, when it gets SIGINT (Ctrl-C), then it releases the
    item within its grace period and exits 130, not 143 (the old worker exited 143)."""
    marker = tmp_path / "started"
    queue = queued(tmp_path, task("slow_write", "long", seconds=60, started_marker=str(marker)))
    log = tmp_path / "worker.log"
    proc = start_batchml(
        "--root", str(tmp_path), "--tasks", "tests.sample_tasks", "worker", "--grace", "0",
        log=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == exitcodes.INTERRUPTED, log.read_text()
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    item = queue.get("long")
    assert item.state == State.READY and item.attempts == 0
    assert "SIGINT: releasing the current item now" in log.read_text()


def test_an_unexpected_error_is_one_line_and_exit_70(tmp_path: Path) -> None:
    """Given a storage root that is a file, when ``data generate`` writes under it (an OSError
    no command expects), then it exits 70 with one line and a hint, and the traceback only
    with --log-level DEBUG (the old CLI: a traceback, exit 1)."""
    root = tmp_path / "a-file"
    root.write_text("not a folder\n")
    args = ("data", "generate", "--days", "3", "--customers", "50", "--terminals", "50")
    result = run_batchml("--root", str(root), "--log-level", "ERROR", *args)
    assert result.code == exitcodes.SOFTWARE, result.err
    line = one_line(result)
    assert line.startswith("internal error: ") and "a-file" in line
    assert line.endswith("(run with --log-level DEBUG for the traceback)")
    debug = run_batchml("--root", str(root), "--log-level", "DEBUG", *args)
    assert debug.code == exitcodes.SOFTWARE and "Traceback" in debug.err
