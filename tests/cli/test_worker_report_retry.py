"""A worker that finished the work does not exit 69 for a blip while it writes the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchml import exitcodes
from batchml.cli import worker_cmd
from batchml.errors import QueueUnavailable
from batchml.queue.base import ItemSpec
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.cli import run_cli


def test_a_blip_while_the_final_report_is_written_is_ridden_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a worker that drained the queue, when the queue is unreachable once as the report
    is written (seen in tests/netfaults case 3: a reset right after 'Queue empty'), then the
    report is written on the next try and the worker exits 0 (it exited 69: a Job would have
    retried a pod whose work was done)."""
    root = tmp_path / "root"
    root.mkdir()
    with SqliteQueue(root / "queue.db") as queue:
        queue.push([ItemSpec(payload={"task": "noop"}, id="n1")])
    calls: list[str] = []
    real = worker_cmd.write_reports

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[1]))
        if len(calls) == 1:
            raise QueueUnavailable("cannot reach the queue: Connection closed by server.")
        return real(*args, **kwargs)

    monkeypatch.setattr(worker_cmd, "write_reports", flaky)
    result = run_cli(capsys, "--root", str(root), "worker", "--poll", "0.05", "--queue-retry", "5")
    assert result.code == exitcodes.OK, result.err
    assert calls == ["default", "default"]
    assert (root / "runs" / "default" / "report.txt").is_file()
