"""The storage root: confinement, atomic writes, publish after commit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchml.errors import PathEscapeError, StorageError
from batchml.storage import Publication, Storage, sha256_file


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path / "root")


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "/etc/passwd", "datasets/../../x", "a/../../b", "", "C:/x", "a\x00b"]
)
def test_paths_that_escape_the_root_are_refused(storage: Storage, bad: str) -> None:
    with pytest.raises(PathEscapeError):
        storage.resolve(bad)


def test_symlink_out_of_the_root_is_refused(storage: Storage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.parquet").write_text("x")
    storage.root.mkdir(parents=True)
    os.symlink(outside, storage.root / "datasets")
    with pytest.raises(PathEscapeError, match="symlink"):
        storage.resolve("datasets/secret.parquet")


def test_symlink_inside_the_root_is_fine(storage: Storage) -> None:
    (storage.root / "real").mkdir(parents=True)
    os.symlink(storage.root / "real", storage.root / "alias")
    assert storage.resolve("alias/x.txt") == storage.root / "alias" / "x.txt"


def test_atomic_write_leaves_no_temporary_file(storage: Storage) -> None:
    storage.write_text("runs/r/report.txt", "hello\n")
    assert (storage.root / "runs/r/report.txt").read_text() == "hello\n"
    assert [p.name for p in (storage.root / "runs/r").iterdir()] == ["report.txt"]


def test_failed_atomic_write_keeps_the_old_file(storage: Storage) -> None:
    storage.write_text("a.txt", "old")
    with pytest.raises(RuntimeError), storage.open_atomic("a.txt", "w") as handle:
        handle.write("new")
        raise RuntimeError("crash while writing")
    assert (storage.root / "a.txt").read_text() == "old"
    assert [p.name for p in storage.root.iterdir()] == ["a.txt"]


def _stage(storage: Storage, content: str, token: int = 3) -> Publication:
    staged = storage.staging_path("item:1", token, "runs/r/out.txt")
    assert staged == f".staging/item%3A1/t{token}/runs%2Fr%2Fout.txt"  # one flat folder per attempt
    path = storage.prepare(staged)
    path.write_text(content)
    return Publication(staged=staged, final="runs/r/out.txt", sha256=sha256_file(path))


def test_publish_is_idempotent_and_cleans_staging(storage: Storage) -> None:
    pub = _stage(storage, "result")
    final = storage.publish(pub)
    assert final.read_text() == "result"
    assert storage.publish(pub) == final  # a second (or concurrent) publish is a no-op
    assert not (storage.root / ".staging").exists() or not any(
        (storage.root / ".staging").iterdir()
    )


def test_publish_refuses_a_file_changed_after_commit(storage: Storage) -> None:
    pub = _stage(storage, "result")
    storage.publish(pub)
    (storage.root / pub.final).write_text("tampered")
    with pytest.raises(StorageError, match="sha256"):
        storage.publish(pub)


def test_publish_reports_a_lost_output(storage: Storage) -> None:
    pub = Publication(staged=".staging/x.t1/a", final="runs/r/a", sha256="0" * 64)
    with pytest.raises(StorageError, match="neither"):
        storage.publish(pub)


def test_discard_attempt_removes_its_staging_and_no_other(storage: Storage) -> None:
    pub = _stage(storage, "abandoned")
    other = _stage(storage, "the next attempt", token=4)
    storage.discard_attempt("item:1", 3)
    assert not storage.resolve(pub.staged).exists()
    assert not (storage.root / pub.final).exists()
    assert storage.resolve(other.staged).read_text() == "the next attempt"
    storage.discard_attempt("item:1", 4)
    assert list((storage.root / ".staging").iterdir()) == []


def test_staging_folders_are_made_even_if_a_cleaner_prunes_the_item_folder_meanwhile(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process removes the empty folder of the item (its last attempt was discarded)
    between our opening it and making this attempt's folder in it: the walk starts again."""
    storage.prepare(storage.staging_path("x", 1, "a.txt"))
    storage.discard_attempt("x", 1)
    (storage.root / ".staging/x").mkdir()  # empty: what a cleaner prunes
    real_mkdir, pruned = os.mkdir, []

    def mkdir(name: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if name == "t2" and not pruned:
            pruned.append(name)
            os.rmdir(storage.root / ".staging/x")
        real_mkdir(name, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir)
    path = storage.prepare(storage.staging_path("x", 2, "out/a.txt"))
    path.write_text("staged")
    assert pruned and (storage.root / ".staging/x/t2/out%2Fa.txt").read_text() == "staged"
