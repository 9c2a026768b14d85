"""The SQLite backend against the shared queue contract, plus what only SQLite has."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchml.errors import ConfigError
from batchml.queue import open_queue
from batchml.queue.base import QueueOptions, WorkQueue
from batchml.queue.sqlite import SqliteQueue, path_from_url
from tests.queue_contract import QueueContract


class TestSqliteQueue(QueueContract):
    def make_queue(self, tmp_path: Path, options: QueueOptions) -> WorkQueue:
        return SqliteQueue(tmp_path / "queue.db", options)


def test_url_forms() -> None:
    assert path_from_url("sqlite:///rel/q.db") == Path("rel/q.db")
    assert path_from_url("sqlite:////abs/q.db") == Path("/abs/q.db")
    with pytest.raises(ConfigError):
        path_from_url("sqlite://")
    with pytest.raises(ConfigError, match="unsupported queue URL"):
        open_queue("postgres://x")


def test_wal_mode_and_reopen(tmp_path: Path) -> None:
    q = open_queue(f"sqlite:///{tmp_path}/q.db")
    assert isinstance(q, SqliteQueue)
    mode = q._connection().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    q.close()
    again = open_queue(q.url)
    assert again.drained()
