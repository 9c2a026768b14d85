"""report.txt (the tutorial's block format, plus ROC AUC and average precision) and report.json.

Both are rendered from records alone, so rendering twice gives the same bytes: the date in
each block is when that version was committed, not when the report was drawn.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from batchml.queue.base import WorkQueue
from batchml.report.records import current_lineage_records, lineage_records, read_records
from batchml.storage import Storage
from batchml.worker.publish import roll_forward


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _when(ts: float | None) -> str:
    if not ts:
        return "n/a"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def build_report(storage: Storage, run: str, queue: WorkQueue | None = None) -> dict[str, Any]:
    """The machine-readable report: one entry per lineage version, plus other committed items."""
    if queue is not None:
        roll_forward(storage, queue)
    records = read_records(storage, run)
    trained, stale = lineage_records(records), 0
    if queue is not None:  # only the versions of the queue's current lineage
        trained, stale = current_lineage_records(records, queue.lineage(run))
    versions = []
    for record in trained:
        result = record["result"]
        versions.append(
            {
                "version": result["version"],
                "dataset": result.get("dataset"),
                "item_id": record["item_id"],
                "checkpoint": result.get("checkpoint"),
                "sha256": result.get("sha256"),
                "params_digest": result.get("params_digest"),
                "parent_version": result.get("parent_version"),
                "committed_at": _when(record.get("finished_at")),
                "worker": record.get("worker"),
                "attempt": record.get("attempt"),
                "train": result.get("train"),
                "test": result.get("test"),
                "seconds": result.get("seconds"),
            }
        )
    tasks: dict[str, int] = {}
    for record in [r for r in records if r.get("task") != "fraud.train"] + trained:
        tasks[str(record.get("task"))] = tasks.get(str(record.get("task")), 0) + 1
    report: dict[str, Any] = {
        "run": run,
        "committed_items": tasks,
        "versions": versions,
        "final": versions[-1] if versions else None,
    }
    if queue is not None:
        report["stale_records"] = stale
        report["lineage_head"] = queue.lineage_head(run).to_json()
    return report


def render_text(report: dict[str, Any]) -> str:
    """The tutorial's report.txt blocks, one per lineage version."""
    blocks = []
    for v in report["versions"]:
        train, test = v.get("train") or {}, v.get("test") or {}
        lines = [
            f"Report generated on: {v['committed_at']}",
            f"Training dataset: {v['dataset']}",
            f"Model checkpoint: {v['checkpoint']} (v{v['version']}, sha256 {v['sha256']})",
            "---",
            f"Accuracy on training data: {_fmt(train.get('accuracy'))}",
            f"Accuracy on testing data: {_fmt(test.get('accuracy'))}",
            f"ROC AUC on training data: {_fmt(train.get('roc_auc'))}",
            f"ROC AUC on testing data: {_fmt(test.get('roc_auc'))}",
            f"Average precision on training data: {_fmt(train.get('average_precision'))}",
            f"Average precision on testing data: {_fmt(test.get('average_precision'))}",
            f"Card precision@{test.get('top_k', 100)} on testing data: "
            f"{_fmt(test.get('card_precision_at_k'))}",
        ]
        blocks.append("\n".join(lines) + "\n")
    if report.get("stale_records"):
        blocks.append(
            f"{report['stale_records']} stale records ignored (versions no longer in the "
            "queue's lineage: a purged run, or a lineage reset)\n"
        )
    return "\n".join(blocks)


def write_reports(storage: Storage, run: str, queue: WorkQueue | None = None) -> dict[str, Any]:
    """Render report.txt and report.json of the run atomically; return the report."""
    report = build_report(storage, run, queue)
    storage.write_text(storage.run_path(run, "report.txt"), render_text(report))
    stable = {k: v for k, v in report.items() if k != "lineage_head"}
    storage.write_text(
        storage.run_path(run, "report.json"), json.dumps(stable, indent=2, sort_keys=True) + "\n"
    )
    return report
