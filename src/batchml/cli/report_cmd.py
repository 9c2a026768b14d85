"""``batchml report``: render and print the run's report."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from batchml.cli.common import console, queue, settings
from batchml.report import render_text, write_reports


def report(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json instead.")] = False,
) -> None:
    """Render <root>/runs/<run>/report.txt and report.json from the records, and print one."""
    s = settings(ctx)
    with queue(ctx) as q:
        data = write_reports(s.storage(), s.run, q)
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(
            render_text(data) or f"run {s.run!r} has no trained version yet", highlight=False
        )
