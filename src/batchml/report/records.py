"""Reading ``<root>/runs/<run>/records/*.json``: one record per committed item."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from batchml.errors import StorageError
from batchml.queue.base import LineageHead
from batchml.storage import Storage


def read_records(storage: Storage, run: str) -> list[dict[str, Any]]:
    """Every record of the run, ordered by lineage version then commit time."""
    folder = storage.resolve(storage.run_path(run, "records"))
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise StorageError(f"{path}: unreadable record ({exc})") from None
    return sorted(records, key=lambda r: (_version(r), r.get("finished_at", 0.0)))


def _version(record: dict[str, Any]) -> int:
    result = record.get("result") or {}
    return int(result.get("version") or 0) if record.get("task") == "fraud.train" else 0


def lineage_records(
    records: list[dict[str, Any]], lineage: Sequence[LineageHead] | None = None
) -> list[dict[str, Any]]:
    """Records of training steps (one per lineage version), oldest first; given the queue's
    current ``lineage``, only those of its versions (see :func:`current_lineage_records`)."""
    trained = [
        r
        for r in records
        if r.get("task") == "fraud.train" and (r.get("result") or {}).get("version")
    ]
    return trained if lineage is None else current_lineage_records(trained, lineage)[0]


def current_lineage_records(
    records: list[dict[str, Any]], lineage: Sequence[LineageHead]
) -> tuple[list[dict[str, Any]], int]:
    """The training records of the queue's current lineage, and how many others were ignored.

    A record counts when its (version, item id, checkpoint sha256) is a version of
    ``lineage``. The others are stale: left on the storage root by a purged run, or by versions
    a ``lineage reset`` removed, and never shown as if they were the model."""
    current = {
        (h.version, h.item_id, h.checkpoint.sha256 if h.checkpoint else None) for h in lineage
    }
    trained = lineage_records(records)
    kept = [r for r in trained if _lineage_key(r) in current]
    return kept, len(trained) - len(kept)


def _lineage_key(record: dict[str, Any]) -> tuple[int, str | None, str | None]:
    result = record.get("result") or {}
    return _version(record), record.get("item_id"), result.get("sha256")
