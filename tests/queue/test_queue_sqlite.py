"""The SQLite backend against the shared queue contract, plus what only SQLite has."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchml.errors import ConfigError, QueueNotFound
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, QueueOptions, State, WorkQueue
from batchml.queue.sqlite.fs import path_from_url
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.queue_contract import QueueContract


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


# -- opening without creating, and the generation of old files ---------------------------------


def test_open_without_create_refuses_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    """Given no queue.db, when a reading command opens it (create=False), then QueueNotFound
    names the path and no file appears; with create=True the file is made with a generation."""
    path = tmp_path / "q.db"
    with pytest.raises(QueueNotFound, match=str(path)):
        open_queue(f"sqlite:///{path}", create=False)
    assert not path.exists()
    made = open_queue(f"sqlite:///{path}")
    assert path.is_file() and made.generation()
    again = open_queue(f"sqlite:///{path}", create=False)
    assert again.generation() == made.generation()


def test_a_missing_folder_is_refused_never_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given sqlite:///nonexistent/dir/q.db (relative, as a typo gives), then opening it is a
    ConfigError naming the folder, and no folder is created under the current directory."""
    monkeypatch.chdir(tmp_path)
    for create in (True, False):
        with pytest.raises(ConfigError, match="nonexistent/dir"):
            open_queue("sqlite:///nonexistent/dir/q.db", create=create)
    assert list(tmp_path.iterdir()) == []


def test_a_queue_file_from_before_generations_gets_one_on_open(tmp_path: Path) -> None:
    """Given a queue.db written without the meta table (an older batchml), when opened, then
    the table is added and a generation created; its items are untouched."""
    path = tmp_path / "old.db"
    q = SqliteQueue(path)
    q.push([ItemSpec(payload={"n": 1}, id="a")])
    q._connection().execute("DROP TABLE meta")
    q.close()
    reopened = open_queue(f"sqlite:///{path}", create=False)
    generation = reopened.generation()
    assert generation and reopened.get("a").state == State.READY
    assert open_queue(f"sqlite:///{path}").generation() == generation  # kept on later opens


def test_a_purged_queue_gets_its_new_generation_from_a_push_not_from_an_open(
    tmp_path: Path,
) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    first = q.generation()
    q.purge()
    assert SqliteQueue(tmp_path / "q.db").generation() is None
    q.push([ItemSpec(payload={"n": 1})])
    assert q.generation() not in (None, first)
