"""The command line: settings from flags and BATCHML_* variables, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.fraud.data import datasets
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, State
from tests.support.cli import run_cli
from tests.support.fraud_data import small_root


def test_help_lists_every_command(capsys) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(capsys, "--help")
    assert result.code == 0
    for command in ("data", "queue", "worker", "report", "fraud", "demo"):
        assert command in result.out


def test_environment_variables_configure_root_run_and_queue(
    capsys, monkeypatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BATCHML_ROOT", str(tmp_path / "env-root"))
    monkeypatch.setenv("BATCHML_QUEUE", f"sqlite:///{tmp_path}/elsewhere.db")
    monkeypatch.setenv("BATCHML_RUN", "from-env")
    result = run_cli(capsys, "queue", "add", "noop", "--payload", '{"x": 1}', "--id", "n1")
    assert result.code == 0 and "n1: added" in result.out
    item = open_queue(f"sqlite:///{tmp_path}/elsewhere.db").get("n1")
    assert item.payload == {"task": "noop", "run": "from-env", "x": 1}
    flag = run_cli(capsys, "--run", "from-flag", "queue", "add", "noop", "--id", "n2")
    assert flag.code == 0
    assert open_queue(f"sqlite:///{tmp_path}/elsewhere.db").get("n2").payload["run"] == "from-flag"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--queue", "postgres://x", "queue", "status"], exitcodes.CONFIG, "unsupported queue URL"),
        (["--run", "../up", "queue", "status"], exitcodes.CONFIG, "--run"),
        (["queue", "purge"], exitcodes.CONFIG, "--yes"),
        (["queue", "push"], exitcodes.CONFIG, "run `batchml data generate`"),
        (["queue", "add", "noop", "--payload", "[1"], exitcodes.CONFIG, "not valid JSON"),
        (["data", "import", "/nonexistent/file.parquet"], 1, "no such file or folder"),
        (["worker", "--lease-ttl", "0"], exitcodes.CONFIG, "--lease-ttl must be positive"),
    ],
)
def test_expected_failures_are_one_line_without_traceback(
    capsys,
    tmp_path: Path,
    args: list[str],
    code: int,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    result = run_cli(capsys, "--root", str(tmp_path / "r"), *args)
    assert result.code == code, result.err
    assert message in result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1


def test_usage_error_exits_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "queue", "push", "--no-such-flag").code == exitcodes.USAGE


def test_bad_inputs_go_dead_and_everything_else_completes(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Given a corrupt day, a day missing a column, an empty day and an item pointing outside
    the root, when the workers run, then each ends dead with a clear error, the lineage stops
    before the first (the rest of its chain blocked, no hang, no gap), and the worker exits 1."""
    root = tmp_path / "root"
    days = small_root(tmp_path / "cache", root)[:12]
    for extra in datasets.training_days(datasets.Storage(root))[12:]:
        (root / datasets.day_path(extra)).unlink()
    (root / datasets.day_path(days[3])).write_bytes(b"PAR1 this is not parquet")
    import pandas as pd

    frame = pd.read_parquet(root / datasets.day_path(days[5]))
    frame.drop(columns=["TX_AMOUNT"]).to_parquet(root / datasets.day_path(days[5]))
    frame.iloc[:0].to_parquet(root / datasets.day_path(days[7]))
    cli = ("--root", str(root), "--max-attempts", "2")
    assert run_cli(capsys, *cli, "queue", "push").code == 0
    escape = {"dataset": "passwd", "path": "../../../etc/passwd"}
    refused = run_cli(
        capsys, *cli, "queue", "add", "fraud.train", "--payload", json.dumps(escape), "--id", "esc"
    )
    assert refused.code == exitcodes.CONFIG and "must stay inside" in refused.err
    # the same item written straight into the queue: the worker refuses it on its own
    open_queue(f"sqlite:///{root}/queue.db").push(
        [ItemSpec(payload={"task": "fraud.train", "run": "default", **escape}, id="esc")]
    )

    worker = run_cli(capsys, *cli, "worker", "--poll", "0.05")
    assert worker.code == exitcodes.DEAD_ITEMS, worker.err
    queue = open_queue(f"sqlite:///{root}/queue.db")
    dead = {item.id: item.last_error or "" for item in queue.items([State.DEAD])}
    # the features blocks compute the good days and list the bad ones; the lineage stops at the
    # first bad day, whose train item dies on it
    corrupt = f"train:default:{days[3]}"
    assert "corrupt or unreadable Parquet" in dead[corrupt]
    block = queue.get(f"features:v2-w1-7-30_d7:{days[0]}..{days[6]}")
    assert block is not None and block.state == State.DONE and block.result is not None
    assert "missing required column(s) TX_AMOUNT" in block.result["invalid"][days[5]]
    assert sorted(block.result["invalid"]) == [days[3], days[5]]
    later = queue.get(f"features:v2-w1-7-30_d7:{days[7]}..{days[11]}")
    assert later is not None and later.result is not None
    assert "empty" in later.result["invalid"][days[7]]
    assert "PathEscapeError" in dead["esc"] and "must stay inside" in dead["esc"]
    assert [h.dataset for h in queue.lineage("default")] == days[:3]
    blocked = {item.id: item.last_error or "" for item in queue.items([State.BLOCKED])}
    assert sorted(blocked) == [f"train:default:{day}" for day in days[4:]]
    assert all(f"blocked: dependency {corrupt} is dead: " in r for r in blocked.values())
    status = run_cli(capsys, *cli, "queue", "status")
    assert corrupt in status.out and "corrupt or unreadable Parquet" in status.out
    assert f"blocked train:default:{days[5]}: blocked: dependency {corrupt}" in status.out
