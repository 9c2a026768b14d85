"""Reading ``<root>/runs/<run>/records/*.json``: one record per committed item.

A record belongs to the run's model lineage when its ``lineage`` is set: the head its item
advanced the lineage to (the worker writes it, whatever the task). Lineage records are chosen
by that alone, never by the task's name, so any task that keeps a lineage gets a report.
"""

from __future__ import annotations

import json
import math
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
    return sorted(records, key=lambda r: (lineage_version(r), r.get("finished_at", 0.0)))


def lineage_head(record: dict[str, Any]) -> dict[str, Any] | None:
    """The lineage head the record's item advanced to, or None (it made no version)."""
    head = record.get("lineage")
    if not isinstance(head, dict) or not isinstance(head.get("version"), int):
        return None
    return head if head["version"] > 0 else None


def lineage_version(record: dict[str, Any]) -> int:
    head = lineage_head(record)
    return int(head["version"]) if head else 0


def lineage_records(
    records: list[dict[str, Any]], lineage: Sequence[LineageHead] | None = None
) -> list[dict[str, Any]]:
    """Records of lineage steps (one per version), oldest first; given the queue's current
    ``lineage``, only those of its versions (see :func:`current_lineage_records`)."""
    stepped = [r for r in records if lineage_head(r) is not None]
    return stepped if lineage is None else current_lineage_records(stepped, lineage)[0]


def current_lineage_records(
    records: list[dict[str, Any]], lineage: Sequence[LineageHead]
) -> tuple[list[dict[str, Any]], int]:
    """The lineage records of the queue's current lineage, and how many others were ignored.

    A record counts when the head it wrote (version, item id, checkpoint sha256, dataset,
    params digest) is a version of ``lineage``. The others are stale: left on the storage root
    by a purged run, or by versions a ``lineage reset`` removed, and never shown as if they
    were the model."""
    current = {_head_key(h.to_json()) for h in lineage}
    stepped = lineage_records(records)
    kept = [r for r in stepped if _head_key(lineage_head(r) or {}) in current]
    return kept, len(stepped) - len(kept)


def _head_key(head: dict[str, Any]) -> tuple[Any, ...]:
    checkpoint = head.get("checkpoint") or {}
    return (
        head.get("version"),
        head.get("item_id"),
        checkpoint.get("sha256"),
        head.get("dataset"),
        head.get("params_digest"),
    )


def numeric_fields(result: Any, *, depth: int = 2, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a record's ``result``, by name; those of a nested object (down to
    ``depth`` levels) as ``outer.inner``. Booleans are no numbers; the result's own ``version``
    is left out (it is the version's number, not a metric of it)."""
    found: dict[str, float] = {}
    if not isinstance(result, dict):
        return found
    for key in sorted(result, key=str):
        value, name = result[key], f"{prefix}{key}"
        if name == "version" or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            found[name] = value
        elif isinstance(value, dict) and depth > 1:
            found.update(numeric_fields(value, depth=depth - 1, prefix=f"{name}."))
    return found
