"""The issue's first case with real processes: a day's features item dies, the chain waits.

Given five days where the third day's file is corrupt, when a worker process runs, then the
lineage stops after the second day, the third day's features item is dead, the train items of
days 3-5 are blocked behind it (``queue status --json``) and the worker exits 1. When the file
is fixed and ``queue requeue-dead`` runs, a new worker trains days 3, 4, 5 in that order and
exits 0: the lineage is the five days in date order, no day trained out of turn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.queue import open_queue
from batchml.storage import Storage
from tests.support.cli import run_cli
from tests.support.fraud_data import SMALL, small_root

DAYS = [f"2018-04-0{n}" for n in range(1, 6)]


def worker(root: Path) -> subprocess.CompletedProcess[str]:
    """A ``batchml worker`` process on ``root`` (its SQLite queue), until the queue is drained."""
    command = [sys.executable, "-m", "batchml", "--root", str(root), "worker", "--poll", "0.05"]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.timeout(240)
def test_a_dead_day_blocks_the_chain_until_requeued_then_trains_in_date_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    assert small_root(tmp_path / "cache", root, replace(SMALL, n_days=5)) == DAYS
    cli = ("--root", str(root), "--max-attempts", "1")
    broken = root / datasets.day_path(DAYS[2])
    good = broken.read_bytes()
    broken.write_bytes(b"PAR1 this is not parquet")

    pushed = run_cli(capsys, *cli, "queue", "push", "--model", "sgd")
    assert pushed.code == 0, pushed.err
    first = worker(root)
    assert first.returncode == exitcodes.DEAD_ITEMS, first.stderr
    queue = open_queue(f"sqlite:///{root}/queue.db")
    assert [h.dataset for h in queue.lineage("default")] == DAYS[:2]  # old code: 04-04, 04-05 too
    # the day's features block computes the other days; the day's train item dies on it
    assert "2 item(s) are blocked behind dead item(s)" in first.stderr
    status = run_cli(capsys, *cli, "queue", "status", "--json")
    assert status.code == 0, status.err
    data = json.loads(status.out)
    dead = plan.train_id("default", DAYS[2])
    assert data["counts"]["dead"] == 1 and data["dead"][0]["id"] == dead
    assert data["counts"]["blocked"] == 2 and data["drained"]
    assert [b["id"] for b in data["blocked"]] == [plan.train_id("default", d) for d in DAYS[3:]]
    for row in data["blocked"]:
        assert row["reason"].startswith(f"blocked: dependency {dead} is dead: DatasetError: ")

    broken.write_bytes(good)
    requeued = run_cli(capsys, *cli, "queue", "requeue-dead")
    assert requeued.code == 0
    assert "requeued 1 dead item(s); 2 item(s) blocked behind them wait again" in requeued.out
    second = worker(root)
    assert second.returncode == exitcodes.OK, second.stderr
    assert [h.dataset for h in queue.lineage("default")] == DAYS
    heads = queue.lineage("default")
    assert [h.version for h in heads] == [1, 2, 3, 4, 5]
    assert Storage(root).resolve(heads[-1].checkpoint.final).exists()  # type: ignore[union-attr]
    queue.close()
