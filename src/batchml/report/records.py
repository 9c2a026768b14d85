"""Reading ``<root>/runs/<run>/records/*.json``: one record per committed item."""

from __future__ import annotations

import json
from typing import Any

from batchml.errors import StorageError
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


def lineage_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of training steps (one per lineage version), oldest first."""
    return [
        r
        for r in records
        if r.get("task") == "fraud.train" and (r.get("result") or {}).get("version")
    ]
