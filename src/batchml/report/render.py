"""report.txt (one block per lineage version, in the tutorial's format) and report.json.

Both are rendered from records alone, so rendering twice gives the same bytes: the date in
each block is when that version was committed, not when the report was drawn.

A version is a record whose ``lineage`` is set (:mod:`batchml.report.records`), whatever its
task; its entry in report.json holds the lineage facts (version, dataset, item, checkpoint and
its sha256, when, worker, attempt), ``metrics``: every numeric field of its result
(:func:`~batchml.report.records.numeric_fields`), and the fields the workload's report sections
add (:mod:`batchml.report.sections`). Its block in report.txt lists the metrics as
``name: value`` unless a section writes the block's lines itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from batchml.queue.base import WorkQueue
from batchml.report.records import (
    current_lineage_records,
    lineage_head,
    lineage_records,
    numeric_fields,
    read_records,
)
from batchml.report.sections import ReportContext, ReportSection, applicable
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


def version_entry(record: dict[str, Any], sections: Sequence[ReportSection]) -> dict[str, Any]:
    """The report.json entry of the lineage version ``record`` made."""
    head = lineage_head(record) or {}
    checkpoint = head.get("checkpoint") or {}
    entry: dict[str, Any] = {
        "version": head.get("version"),
        "dataset": head.get("dataset"),
        "item_id": record.get("item_id"),
        "task": record.get("task"),
        "checkpoint": checkpoint.get("final"),
        "sha256": checkpoint.get("sha256"),
        "committed_at": _when(record.get("finished_at")),
        "worker": record.get("worker"),
        "attempt": record.get("attempt"),
        "metrics": numeric_fields(record.get("result")),
    }
    for section in sections:
        for key, value in section.version_fields(record).items():
            entry.setdefault(key, value)  # a section adds fields, never replaces them
    return entry


def build_context(
    storage: Storage,
    run: str,
    queue: WorkQueue | None = None,
    sections: Sequence[ReportSection] | None = None,
    *,
    roll: bool = True,
) -> tuple[ReportContext, list[ReportSection]]:
    """The report of the run and what its sections render from; the sections (None: the
    installed ones) that apply to it. Given the ``queue``, only the versions of its current
    lineage are shown (after rolling committed items forward, unless ``roll`` is False)."""
    if queue is not None and roll:
        roll_forward(storage, queue)
    records = read_records(storage, run)
    chosen = applicable(sections, records)
    stepped, stale = lineage_records(records), 0
    if queue is not None:  # only the versions of the queue's current lineage
        stepped, stale = current_lineage_records(records, queue.lineage(run))
    versions = [version_entry(r, chosen) for r in stepped]
    tasks: dict[str, int] = {}
    for record in [r for r in records if lineage_head(r) is None] + stepped:
        tasks[str(record.get("task"))] = tasks.get(str(record.get("task")), 0) + 1
    report: dict[str, Any] = {
        "run": run,
        "committed_items": tasks,
        "versions": versions,
        "final": versions[-1] if versions else None,
        "sections": {},
    }
    if queue is not None:
        report["stale_records"] = stale
        report["lineage_head"] = queue.lineage_head(run).to_json()
    ctx = ReportContext(storage, run, records, stepped, report)
    for section in chosen:
        value = section.json(ctx)
        if value is not None:
            report["sections"][section.name] = value
    return ctx, chosen


def build_report(
    storage: Storage,
    run: str,
    queue: WorkQueue | None = None,
    sections: Sequence[ReportSection] | None = None,
) -> dict[str, Any]:
    """The machine-readable report: one entry per lineage version, plus other committed items."""
    return build_context(storage, run, queue, sections)[0].report


def _version_lines(version: dict[str, Any], sections: Sequence[ReportSection]) -> list[str]:
    for section in sections:
        lines = section.version_lines(version)
        if lines is not None:
            return lines
    metrics = version.get("metrics") or {}
    return [f"{name}: {_fmt(value)}" for name, value in sorted(metrics.items())] or [
        "(no numeric result)"
    ]


def render_text(
    report: dict[str, Any],
    sections: Sequence[ReportSection] = (),
    ctx: ReportContext | None = None,
) -> str:
    """The report.txt blocks, one per lineage version, then the sections' text."""
    blocks = []
    for v in report["versions"]:
        lines = [
            f"Report generated on: {v['committed_at']}",
            f"Training dataset: {_fmt(v['dataset'])}",
            f"Model checkpoint: {_fmt(v['checkpoint'])} (v{v['version']}, sha256 {v['sha256']})",
            "---",
            *_version_lines(v, sections),
        ]
        blocks.append("\n".join(lines) + "\n")
    if ctx is not None:
        blocks += [text for text in (s.text(ctx) for s in sections) if text]
    if report.get("stale_records"):
        blocks.append(
            f"{report['stale_records']} stale records ignored (versions no longer in the "
            "queue's lineage: a purged run, or a lineage reset)\n"
        )
    return "\n".join(blocks)


def write_context(ctx: ReportContext, sections: Sequence[ReportSection]) -> str:
    """Render report.txt and report.json of ``ctx`` atomically; return report.txt's text."""
    report, storage, run = ctx.report, ctx.storage, ctx.run
    text = render_text(report, sections, ctx)
    storage.write_text(storage.run_path(run, "report.txt"), text)
    stable = {k: v for k, v in report.items() if k != "lineage_head"}
    storage.write_text(
        storage.run_path(run, "report.json"), json.dumps(stable, indent=2, sort_keys=True) + "\n"
    )
    return text


def write_reports(
    storage: Storage,
    run: str,
    queue: WorkQueue | None = None,
    sections: Sequence[ReportSection] | None = None,
) -> dict[str, Any]:
    """Render report.txt and report.json of the run atomically; return the report."""
    ctx, chosen = build_context(storage, run, queue, sections)
    write_context(ctx, chosen)
    return ctx.report
