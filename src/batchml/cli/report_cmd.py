"""``batchml report``: render and print the run's report; ``--html`` adds the page with plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from batchml.cli.common import console, existing_root, queue
from batchml.queue.base import AttemptRecord, State, WorkQueue
from batchml.report.html import render_html
from batchml.report.render import build_context, write_context
from batchml.report.sections import ReportContext, ReportSection

#: attempts read from the queue for the timeline (a 183-day run has ~370 items)
HISTORY_LIMIT = 100_000


def run_history(q: WorkQueue, records: list[dict[str, Any]], run: str) -> list[AttemptRecord]:
    """The queue's attempts on the run's items: committed ones, and dead ones of the run."""
    ids = {str(r["item_id"]) for r in records}
    ids |= {i.id for i in q.items([State.DEAD]) if i.payload.get("run") == run}
    return [a for a in q.history(HISTORY_LIMIT) if a.item_id in ids]


def write_html(ctx: ReportContext, q: WorkQueue, sections: Sequence[ReportSection]) -> str:
    """Render ``runs/<run>/report.html`` atomically; return its root-relative path."""
    page = render_html(ctx, run_history(q, ctx.records, ctx.run), sections)
    path = ctx.storage.run_path(ctx.run, "report.html")
    ctx.storage.write_text(path, page)
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
        context, sections = build_context(storage, s.run, q)
        text = write_context(context, sections)
        page = write_html(context, q, sections) if html else None
    if as_json:
        console.print_json(json.dumps(context.report))
    else:
        console.print(text or f"run {s.run!r} has no lineage version yet", highlight=False)
    if page:
        console.print(f"wrote {storage.resolve(page)}", highlight=False)
