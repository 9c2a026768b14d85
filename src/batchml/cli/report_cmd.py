"""``batchml report``: render and print the run's report; ``--html`` adds the page with plots."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from batchml.cli.common import console, existing_root, queue
from batchml.queue.base import AttemptRecord, State, WorkQueue
from batchml.report import render_text, write_reports
from batchml.report.html import render_html
from batchml.report.records import lineage_records, read_records
from batchml.storage import Storage

#: attempts read from the queue for the timeline (a 183-day run has ~370 items)
HISTORY_LIMIT = 100_000


def run_history(q: WorkQueue, records: list[dict[str, Any]], run: str) -> list[AttemptRecord]:
    """The queue's attempts on the run's items: committed ones, and dead ones of the run."""
    ids = {str(r["item_id"]) for r in records}
    ids |= {i.id for i in q.items([State.DEAD]) if i.payload.get("run") == run}
    return [a for a in q.history(HISTORY_LIMIT) if a.item_id in ids]


def final_curves(storage: Storage, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """ROC and precision–recall of the last lineage version, when it is a fraud model."""
    trained = lineage_records(records)
    if not trained:
        return None
    from batchml.fraud.evaluation.curves import version_curves

    return version_curves(storage, trained[-1])


def write_html(storage: Storage, run: str, q: WorkQueue, report: dict[str, Any]) -> str:
    """Render ``runs/<run>/report.html`` atomically; return its root-relative path."""
    records = read_records(storage, run)
    page = render_html(
        report, records, run_history(q, records, run),
        final_curves(storage, lineage_records(records, q.lineage(run))),
    )  # fmt: skip
    path = storage.run_path(run, "report.html")
    storage.write_text(path, page)
    return path


def report(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json instead.")] = False,
    html: Annotated[
        bool,
        typer.Option("--html", help="Also write report.html (self-contained, with plots)."),
    ] = False,
) -> None:
    """Render <root>/runs/<run>/report.txt and report.json from the records, and print one."""
    s = existing_root(ctx)
    storage = s.storage()
    with queue(ctx, create=False) as q:
        data = write_reports(storage, s.run, q)
        page = write_html(storage, s.run, q, data) if html else None
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(
            render_text(data) or f"run {s.run!r} has no trained version yet", highlight=False
        )
    if page:
        console.print(f"wrote {storage.resolve(page)}", highlight=False)
