"""Recovering a lineage whose checkpoint was lost, and reporting only the current lineage.

A run trained on 5 days by an undisturbed worker is the reference. Copies of its storage root
(queue included) then lose a checkpoint, or are purged and trained again on fewer days.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.fraud import plan
from batchml.queue.base import LineageHead, State
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.report import write_reports
from batchml.settings import Settings, WorkerSettings
from batchml.worker.local import spawn_workers
from batchml.worker.loop import Worker
from tests.support.cli import run_cli
from tests.support.fraud_data import small_root

DAYS = 5


def _settings(root: Path) -> Settings:
    return Settings(root=root, worker=WorkerSettings(lease_ttl=30, poll_interval=0.02))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[LineageHead]]:
    """A root whose run was trained on 5 days, undisturbed: its days and its lineage."""
    root = tmp_path_factory.mktemp("trained") / "root"
    days = small_root(tmp_path_factory.mktemp("sim-cache"), root)[:DAYS]
    settings = _settings(root)
    queue = SqliteQueue(root / "queue.db", settings.queue_options())
    queue.push(plan.training_items(queue, days, run=settings.run))
    assert Worker(queue, settings.storage(), settings, "ref").run() == exitcodes.OK
    chain = queue.lineage(settings.run)
    queue.close()
    assert [h.version for h in chain] == list(range(1, DAYS + 1))
    return root, days, chain


def _copy(trained: tuple[Path, list[str], list[LineageHead]], tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(trained[0], root)
    return root


def _checkpoint(root: Path, head: LineageHead) -> Path:
    assert head.checkpoint is not None
    return root / head.checkpoint.final


def _files(chain: list[LineageHead]) -> list[tuple[str, str]]:
    """(path, sha256) of each version's checkpoint."""
    return [(h.checkpoint.final, h.checkpoint.sha256) for h in chain if h.checkpoint]


@pytest.mark.timeout(120)
def test_a_lost_head_checkpoint_is_recovered_by_reset_and_retraining(
    trained: tuple[Path, list[str], list[LineageHead]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given v5's checkpoint deleted, when `lineage reset --to 3` and a worker process runs,
    then the head is v5 again, every checkpoint is back and verifies, and every version's
    parameters are bit-identical to the undisturbed run's."""
    _, days, reference = trained
    root = _copy(trained, tmp_path)
    _checkpoint(root, reference[4]).unlink()
    cli = ("--root", str(root))

    shown = run_cli(capsys, *cli, "lineage", "show", "--json")
    statuses = [v["status"] for v in json.loads(shown.out)["versions"]]
    assert statuses == ["sha256 ok"] * 4 + ["missing"]

    done = run_cli(capsys, *cli, "lineage", "reset", "--to", "3")
    assert done.code == 0, done.err
    assert "head moved from v5 to v3; re-armed 2 train item(s)" in done.out
    queue = SqliteQueue(root / "queue.db")
    assert queue.lineage_head("default").version == 3
    train = [queue.get(plan.train_id("default", d)) for d in days[3:]]
    assert [(i.state, i.attempts) for i in train] == [(State.READY, 0), (State.WAITING, 0)]

    [worker] = spawn_workers(_settings(root), 1, tmp_path / "logs", ["--poll", "0.05"])
    assert worker.wait(timeout=90) == exitcodes.OK
    chain = queue.lineage("default")
    assert [h.version for h in chain] == list(range(1, DAYS + 1))
    assert [h.params_digest for h in chain] == [h.params_digest for h in reference]
    assert _files(chain) == _files(reference)
    assert _checkpoint(root, chain[4]).is_file()
    shown = run_cli(capsys, *cli, "lineage", "show", "--json")
    assert [v["status"] for v in json.loads(shown.out)["versions"]] == ["sha256 ok"] * DAYS
    report = write_reports(_settings(root).storage(), "default", queue)
    assert [v["version"] for v in report["versions"]] == list(range(1, DAYS + 1))
    assert report["stale_records"] == 0


def test_a_reset_to_a_version_whose_checkpoint_fails_is_refused_naming_the_last_good_one(
    trained: tuple[Path, list[str], list[LineageHead]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given v4's checkpoint corrupted and v5's deleted, when reset to v4, then it is refused
    with the last version that verifies (v3), and the queue is unchanged."""
    _, _, reference = trained
    root = _copy(trained, tmp_path)
    _checkpoint(root, reference[3]).write_bytes(b"not the checkpoint")
    _checkpoint(root, reference[4]).unlink()
    cli = ("--root", str(root))
    refused = run_cli(capsys, *cli, "lineage", "reset", "--to", "4")
    assert refused.code == exitcodes.CONFIG
    assert "v4" in refused.err and "sha256 mismatch" in refused.err
    assert "the last version whose checkpoint verifies is v3" in refused.err
    assert "lineage reset --to 3" in refused.err
    assert run_cli(capsys, *cli, "lineage", "reset", "--to", "9").code == exitcodes.CONFIG
    queue = SqliteQueue(root / "queue.db")
    assert queue.lineage_head("default").version == 5 and queue.drained()


def test_the_report_after_a_purge_shows_the_new_lineage_not_the_old_records(
    trained: tuple[Path, list[str], list[LineageHead]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given a run trained to v5, purged, and trained again on 2 days (head v2), then the
    report's versions are v1 and v2 (the final one v2), and the 3 records of the old v3..v5,
    still on disk, are ignored and counted."""
    _, days, _ = trained
    root = _copy(trained, tmp_path)
    cli = ("--root", str(root))
    assert run_cli(capsys, *cli, "queue", "purge", "--yes").code == 0
    settings = _settings(root)
    queue = SqliteQueue(root / "queue.db", settings.queue_options())
    queue.push(plan.training_items(queue, days[:2], run=settings.run))
    assert Worker(queue, settings.storage(), settings, "again").run() == exitcodes.OK
    assert queue.lineage_head("default").version == 2

    shown = run_cli(capsys, *cli, "report", "--json")
    assert shown.code == 0, shown.err
    report = json.loads(shown.out)
    assert [v["version"] for v in report["versions"]] == [1, 2]
    assert report["final"]["version"] == 2 and report["final"]["dataset"] == days[1]
    assert report["stale_records"] == 3
    assert report["committed_items"]["fraud.train"] == 2
    text = (root / "runs/default/report.txt").read_text()
    assert text.count("Training dataset:") == 2 and "(v5," not in text
    assert "3 stale records ignored" in text
