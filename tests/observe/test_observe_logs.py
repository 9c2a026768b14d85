"""``--log-format json``: one object per line, tagged with the worker, item and run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from batchml.observe import logs
from batchml.queue.base import ItemSpec
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.cli import run_cli


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    yield
    logs.configure("INFO")


def test_worker_logs_one_json_object_per_line_with_its_context(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    q = SqliteQueue(tmp_path / "queue.db")
    (tmp_path / "root").mkdir()  # a worker refuses a storage root that does not exist
    q.push(
        [
            ItemSpec(
                payload={"task": "tests.sample_tasks:write_output", "name": "n1", "run": "exp"},
                id="item-1",
            )
        ]
    )
    result = run_cli(
        capsys, "--root", str(tmp_path / "root"), "--queue", q.url, "--log-format", "json",
        "--tasks", "tests.sample_tasks", "worker", "--worker-id", "w-json", "--poll", "0.05",
    )  # fmt: skip
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.err.splitlines() if line.strip()]
    assert lines, "the worker logged nothing"
    assert lines[0]["message"] == "Worker with sessionID: w-json"  # logged before on_start
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["time"].endswith("Z") and line["level"] in ("INFO", "WARNING", "ERROR")
    assert all(line["worker"] == "w-json" for line in lines[1:])
    committed = next(line for line in lines if line["message"].startswith("committed item-1"))
    assert committed["item"] == "item-1" and committed["run"] == "exp"
    assert committed["task"] == "tests.sample_tasks:write_output" and committed["attempt"] == 1
    last = lines[-1]
    assert "item" not in last  # the context ends with the attempt


def test_json_lines_carry_extra_fields_and_exceptions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("INFO", "json")
    log = logging.getLogger("batchml.test")
    log.info("rows %d", 3, extra={"dataset": "2018-04-01"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    first, second = (json.loads(x) for x in capsys.readouterr().err.splitlines())
    assert first["message"] == "rows 3" and first["dataset"] == "2018-04-01"
    assert first["logger"] == "batchml.test"
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_text_stays_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    logging.getLogger("batchml.test").warning("plain %s", "line")
    err = capsys.readouterr().err
    assert "WARNING batchml.test: plain line" in err and not err.startswith("{")


def test_json_lines_carry_what_cloud_logging_reads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Given a worker logging JSON, then every line parses and has Cloud Logging's
    ``severity`` (beside ``level``) and ``message``; the lines about an item carry the worker
    id, run and item as ``logging.googleapis.com/labels`` (strings), and a line about no item
    only the labels it knows."""
    q = SqliteQueue(tmp_path / "queue.db")
    (tmp_path / "root").mkdir()
    q.push(
        [
            ItemSpec(payload={"task": "tests.sample_tasks:write_output", "name": "n1", "run": "r"}),
            ItemSpec(payload={"task": "tests.sample_tasks:always_fail", "run": "r"}, id="bad"),
        ]
    )
    result = run_cli(
        capsys, "--root", str(tmp_path / "root"), "--queue", q.url, "--log-format", "json",
        "--max-attempts", "1", "--tasks", "tests.sample_tasks", "worker", "--worker-id", "w-gke",
        "--poll", "0.05",
    )  # fmt: skip
    lines = [json.loads(line) for line in result.err.splitlines() if line.strip()]
    assert lines, result.err
    for line in lines:
        assert line["severity"] == line["level"] and line["message"]
    assert {line["severity"] for line in lines} > {"INFO"}  # the failure is not an INFO
    about_bad = [line for line in lines if line.get("item") == "bad"]
    assert about_bad, "no line names the failing item"
    for line in about_bad:
        assert line[logs.LABELS_KEY] == {"worker": "w-gke", "run": "r", "item": "bad"}
    later = [line for line in lines[1:] if "item" not in line]
    assert later and all(line[logs.LABELS_KEY] == {"worker": "w-gke"} for line in later)


def test_severity_names_every_python_level(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cloud Logging's names: CRITICAL stays CRITICAL, custom levels round up, and a line
    without worker fields has no labels."""
    monkeypatch.setattr(logs, "_process_context", {})  # no worker ran in this process
    logs.configure("DEBUG", "json")
    log = logging.getLogger("batchml.test")
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        log.log(level, "at %d", level)
    log.log(logging.INFO + 5, "custom")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["severity"] for x in lines] == [
        "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "WARNING",
    ]  # fmt: skip
    assert all(logs.LABELS_KEY not in x for x in lines)
