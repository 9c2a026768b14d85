"""report.html: one self-contained page with the run's plots, rendered from data alone.

Inputs are the report's context (:func:`batchml.report.render.build_context`: the report, the
run's records and those of its current lineage), the queue's attempt history for the run's
items, and the report sections that apply to the run (:mod:`batchml.report.sections`). No
script, no font or stylesheet from the network: the page opens offline. Nothing in it depends
on when it was drawn, so the same inputs give the same bytes.

Sections (each a ``<section id=...>``): ``summary``; ``metrics`` (each numeric field of the
versions' results, plotted and tabulated; left out when a workload's section shows the metrics
itself); the workload sections' own; ``lineage`` (every version: dataset, item, checkpoint
sha256, when, worker); ``timeline`` (which worker ran which attempt, when, and how it ended,
abandoned attempts included).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from batchml import __version__
from batchml.observe.charts import PALETTE, Series, Span, line_chart, timeline
from batchml.queue.base import AttemptRecord
from batchml.report.sections import ReportContext, ReportSection

#: the generic metrics section plots at most this many fields (its table shows them all)
MAX_PLOTS = 12

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1140px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
table { border-collapse: collapse; font-size: 12px; margin-top: 1em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f6f6f6; } td.text, th.text { text-align: left; }
.muted { color: #777; } code { font-size: 12px; }
details { margin-top: .5em; }
"""


def empty(section: str, title: str, message: str) -> str:
    """A ``<section>`` that only says ``message``."""
    return f'<section id="{section}"><h2>{title}</h2><p>{message}</p></section>'


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]], name: str) -> str:
    """A table whose cells are (data-key, html); keyed cells make the numbers easy to check."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(f'<td data-key="{escape(k)}">{v}</td>' for k, v in row) + "</tr>"
        for row in rows
    )
    return (
        f'<table data-table="{name}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table>"
    )


def metric_names(versions: Sequence[dict[str, Any]]) -> list[str]:
    """Every numeric field some version's result has, sorted."""
    return sorted({name for v in versions for name in v.get("metrics") or {}})


def metrics_section(report: dict[str, Any]) -> str:
    """Each numeric field of the versions' results: a plot per field, and a table of all."""
    versions = report["versions"]
    names = metric_names(versions)
    if not names:
        return empty("metrics", "Results per version", "No version has a numeric result.")
    plots = [
        line_chart(
            f"metric-{name}",
            name,
            [
                Series(
                    name,
                    [(v["version"], v["metrics"][name]) for v in versions if name in v["metrics"]],
                    PALETTE[k % len(PALETTE)],
                )
            ],
            x_label="lineage version",
            y_label=name,
            size=(360, 240),
        )
        for k, name in enumerate(names[:MAX_PLOTS])
    ]
    rows = [
        [
            ("version", str(v["version"])),
            *((f"metrics.{n}", fmt((v.get("metrics") or {}).get(n))) for n in names),
        ]
        for v in versions
    ]
    more = f" (the first {MAX_PLOTS} plotted)" if len(names) > MAX_PLOTS else ""
    return (
        '<section id="metrics"><h2>Results per lineage version</h2>'
        f"<p>{len(names)} numeric result field(s){more}.</p>"
        f'<div class="plots">{"".join(plots)}</div>'
        f"{table(['version', *names], rows, 'metrics')}</section>"
    )


def lineage_section(report: dict[str, Any]) -> str:
    """Every version of the lineage: what made it and its checkpoint."""
    versions = report["versions"]
    if not versions:
        return empty("lineage", "Lineage versions", "No lineage version.")
    rows = [
        [
            ("lineage.version", str(v["version"])),
            ("lineage.dataset", fmt(v.get("dataset"))),
            ("lineage.item_id", fmt(v.get("item_id"))),
            ("lineage.sha256", fmt(v.get("sha256"))),
            ("lineage.committed_at", fmt(v.get("committed_at"))),
            ("lineage.worker", fmt(v.get("worker"))),
        ]
        for v in versions
    ]
    headers = ["version", "dataset", "item", "checkpoint sha256", "committed", "worker"]
    return (
        '<section id="lineage"><h2>Lineage versions</h2>'
        f"<details><summary>All {len(versions)} versions</summary>"
        f"{table(headers, rows, 'lineage')}</details></section>"
    )


def timeline_section(history: list[AttemptRecord]) -> str:
    head = '<section id="timeline"><h2>Run timeline</h2>'
    if not history:
        return head + "<p>The queue has no recorded attempt for this run.</p></section>"
    t0 = min(a.started_at for a in history)
    spans = [
        Span(a.worker, a.started_at - t0, a.ended_at - t0, a.outcome, f"{a.item_id} #{a.token}")
        for a in history
    ]
    chart = timeline("timeline", "Attempts per worker", spans)
    per_worker: dict[str, Counter[str]] = defaultdict(Counter)
    busy: dict[str, float] = defaultdict(float)
    for a in history:
        per_worker[a.worker][a.outcome] += 1
        busy[a.worker] += a.ended_at - a.started_at
    outcomes = sorted({a.outcome for a in history})
    rows = [
        [
            ("worker", escape(w)),
            *((o, str(per_worker[w][o])) for o in outcomes),
            ("busy", f"{busy[w]:.1f}"),
        ]
        for w in sorted(per_worker)
    ]
    span = max(a.ended_at for a in history) - t0
    return (
        f"{head}<p>{len(history)} attempts by {len(per_worker)} worker(s) over {span:.1f} s, "
        f"from {when(t0)}; abandoned attempts (lease expired) are shown as "
        "<em>expired</em>.</p>"
        f"{chart}{table(['worker', *outcomes, 'busy seconds'], rows, 'workers')}</section>"
    )


def summary_section(report: dict[str, Any]) -> str:
    final = report.get("final") or {}
    items = ", ".join(f"{n} {escape(t)}" for t, n in sorted(report["committed_items"].items()))
    lines = [f"<li>committed items: {items or 'none'}</li>"]
    if final:
        first = report["versions"][0]["dataset"]
        lines += [
            f"<li>lineage: {len(report['versions'])} versions, trained on {fmt(first)} … "
            f"{fmt(final['dataset'])}</li>",
            f"<li>final checkpoint: <code>{fmt(final['checkpoint'])}</code> "
            f"(sha256 <code>{fmt(final['sha256'])[:16]}…</code>)</li>",
        ]
    return f'<section id="summary"><ul>{"".join(lines)}</ul></section>'


def render_html(
    ctx: ReportContext, history: list[AttemptRecord], sections: Sequence[ReportSection] = ()
) -> str:
    """The whole page: the generic sections around those of ``sections``."""
    report = ctx.report
    run = escape(str(report["run"]))
    parts = [summary_section(report)]
    if not any(s.covers_metrics for s in sections):
        parts.append(metrics_section(report))
    parts += [s.html(ctx) for s in sections]
    parts += [lineage_section(report), timeline_section(history)]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>batchml report: run {run}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>batchml report: run <code>{run}</code></h1>\n{body}\n"
        f'<footer class="muted"><p>Rendered by batchml {escape(__version__)} from '
        f"{len(ctx.records)} records and {len(history)} attempts.</p></footer>\n</body>\n</html>\n"
    )
