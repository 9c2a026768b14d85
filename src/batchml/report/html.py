"""report.html: one self-contained page with the run's plots, rendered from data alone.

Inputs are the report (:func:`batchml.report.build_report`), the run's records, the queue's
attempt history for the run's items, and optionally the final model's curves (computed by the
workload, e.g. :mod:`batchml.fraud.curves`). No script, no font or stylesheet from the network:
the page opens offline. Nothing in it depends on when it was drawn, so the same inputs give the
same bytes.

Sections (each a ``<section id=...>``): ``summary``, ``metrics`` (test and training metrics per
lineage version, plotted and tabulated), ``data`` (transactions and frauds per day), ``curves``
(ROC and precision–recall of the final model), ``timeline`` (which worker ran which attempt,
when, and how it ended, abandoned attempts included).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from batchml import __version__
from batchml.observe.charts import PALETTE, Series, Span, bar_chart, line_chart, timeline
from batchml.queue.base import AttemptRecord

#: (key in versions[].test / train, label); card precision appears only where recorded
METRICS = (
    ("roc_auc", "ROC AUC"),
    ("average_precision", "average precision"),
    ("card_precision_at_k", "card precision@100"),
    ("accuracy", "accuracy"),
)

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


def _empty(section: str, title: str, message: str) -> str:
    return f'<section id="{section}"><h2>{title}</h2><p>{message}</p></section>'


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]], name: str) -> str:
    """A table whose cells are (data-key, html); keyed cells make the numbers easy to check."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(f'<td data-key="{k}">{v}</td>' for k, v in row) + "</tr>" for row in rows
    )
    return (
        f'<table data-table="{name}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table>"
    )


def _present(versions: list[dict[str, Any]], part: str) -> list[tuple[str, str]]:
    return [
        (key, label)
        for key, label in METRICS
        if any((v.get(part) or {}).get(key) is not None for v in versions)
    ]


def metrics_section(report: dict[str, Any]) -> str:
    versions = report["versions"]
    if not versions:
        return _empty("metrics", "Metrics per version", "No trained version.")
    plots = []
    for part, title in (("test", "Test metrics per version"), ("train", "On the day trained")):
        series = [
            Series(
                label,
                [
                    (v["version"], v[part][key])
                    for v in versions
                    if (v.get(part) or {}).get(key) is not None
                ],
                PALETTE[k],
            )
            for k, (key, label) in enumerate(_present(versions, part))
        ]
        if series:
            plots.append(
                line_chart(
                    f"metrics-{part}",
                    title,
                    series,
                    x_label="lineage version",
                    y_label="score",
                    y_range=(0.0, 1.0),
                    size=(550, 300),
                )
            )
    columns = [(p, k, label) for p in ("test", "train") for k, label in _present(versions, p)]
    headers = ["version", "dataset", *(f"{p} {label}" for p, _, label in columns), "worker"]
    rows = [
        [
            ("version", str(v["version"])),
            ("dataset", fmt(v["dataset"])),
            *((f"{p}.{k}", fmt((v.get(p) or {}).get(k))) for p, k, _ in columns),
            ("worker", fmt(v.get("worker"))),
        ]
        for v in versions
    ]
    return (
        '<section id="metrics"><h2>Metrics per lineage version</h2>'
        f'<div class="plots">{"".join(plots)}</div>'
        f"<details><summary>All {len(versions)} versions</summary>"
        f"{_table(headers, rows, 'versions')}</details></section>"
    )


def per_day(records: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(day, transactions, frauds) from features records, else from training records."""
    days: dict[str, tuple[int, int]] = {}
    for r in records:
        result = r.get("result") or {}
        if r.get("task") == "fraud.features" and "rows" in result:
            day = str((r.get("payload") or {}).get("dataset"))
            days[day] = (int(result["rows"]), int(result.get("frauds", 0)))
        blocks = result.get("days") if r.get("task") == "fraud.features" else None
        for day, counts in (blocks or {}).items():  # a block of days
            days[str(day)] = (int(counts["rows"]), int(counts.get("frauds", 0)))
    for r in records:
        result = r.get("result") or {}
        train = result.get("train") or {}
        if r.get("task") == "fraud.train" and result.get("dataset") not in days and train:
            days[str(result["dataset"])] = (int(train["rows"]), int(train.get("frauds", 0)))
    return [(day, *days[day]) for day in sorted(days)]


def data_section(records: list[dict[str, Any]]) -> str:
    days = per_day(records)
    if not days:
        return _empty("data", "Transactions and frauds per day", "No data.")
    labels = [d for d, _, _ in days]
    tx = bar_chart(
        "transactions-per-day",
        "Transactions per day",
        labels,
        [float(n) for _, n, _ in days],
        y_label="transactions",
    )
    fr = bar_chart(
        "frauds-per-day",
        "Frauds per day",
        labels,
        [float(f) for _, _, f in days],
        y_label="frauds",
        color=PALETTE[1],
    )
    total, frauds = sum(n for _, n, _ in days), sum(f for _, _, f in days)
    return (
        '<section id="data"><h2>Transactions and frauds per day</h2>'
        f'<p data-key="days">{len(days)} days, {total:,} transactions, {frauds:,} frauds '
        f"({100 * frauds / max(total, 1):.2f} %).</p>"
        f'<div class="plots">{tx}{fr}</div></section>'
    )


def curves_section(curves: dict[str, Any] | None) -> str:
    head = '<section id="curves"><h2>Final model: ROC and precision–recall</h2>'
    if not curves:
        return head + "<p>No test set was recorded for the final version.</p></section>"
    roc = line_chart(
        "roc",
        f"ROC (AUC {fmt(curves['roc_auc'])})",
        [
            Series("model", [tuple(p) for p in curves["roc"]], markers=False),
            Series("chance", [(0.0, 0.0), (1.0, 1.0)], "#999", dashed=True, markers=False),
        ],
        x_label="false positive rate",
        y_label="true positive rate",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        size=(420, 380),
    )
    share = curves.get("fraud_share") or 0.0
    pr = line_chart(
        "precision-recall",
        f"Precision–recall (AP {fmt(curves['average_precision'])})",
        [
            Series("model", [tuple(p) for p in curves["pr"]], PALETTE[1], markers=False),
            Series("fraud share", [(0.0, share), (1.0, share)], "#999", dashed=True, markers=False),
        ],
        x_label="recall",
        y_label="precision",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        size=(420, 380),
    )
    facts = [
        ("curves.version", f"v{curves['version']} (trained through {fmt(curves['dataset'])})"),
        ("curves.rows", f"{curves['rows']:,} test transactions, {curves['frauds']:,} frauds"),
        ("curves.roc_auc", fmt(curves["roc_auc"])),
        ("curves.average_precision", fmt(curves["average_precision"])),
        ("curves.card_precision_at_k", fmt(curves.get("card_precision_at_k"))),
    ]
    labels = (
        "model",
        "test set",
        "ROC AUC",
        "average precision",
        f"card precision@{curves.get('top_k', 100)}",
    )
    items = "".join(
        f'<li>{escape(label)}: <span data-key="{key}">{value}</span></li>'
        for label, (key, value) in zip(labels, facts, strict=True)
    )
    sets = ", ".join(f"<code>{escape(d)}</code>" for d in curves["datasets"])
    return (
        f'{head}<div class="plots">{roc}{pr}</div><ul>{items}</ul>'
        f'<p class="muted">Scored on the datasets the final version was tested on: {sets}. '
        "Card precision here keeps every card; <code>batchml fraud evaluate</code> applies the "
        "handbook's protocol (label delay, known-compromised cards removed).</p></section>"
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
        f"{chart}{_table(['worker', *outcomes, 'busy seconds'], rows, 'workers')}</section>"
    )


def summary_section(report: dict[str, Any]) -> str:
    final = report.get("final") or {}
    items = ", ".join(f"{n} {escape(t)}" for t, n in sorted(report["committed_items"].items()))
    lines = [f"<li>committed items: {items or 'none'}</li>"]
    if final:
        first = report["versions"][0]["dataset"]
        lines += [
            f"<li>lineage: {len(report['versions'])} versions, trained on {escape(str(first))} … "
            f"{escape(str(final['dataset']))}</li>",
            f"<li>final checkpoint: <code>{escape(str(final['checkpoint']))}</code> "
            f"(sha256 <code>{escape(str(final['sha256']))[:16]}…</code>)</li>",
        ]
    return f'<section id="summary"><ul>{"".join(lines)}</ul></section>'


def render_html(
    report: dict[str, Any],
    records: list[dict[str, Any]],
    history: list[AttemptRecord],
    curves: dict[str, Any] | None = None,
) -> str:
    """The whole page."""
    run = escape(str(report["run"]))
    body = "\n".join(
        (
            summary_section(report),
            metrics_section(report),
            data_section(records),
            curves_section(curves),
            timeline_section(history),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>batchml report: run {run}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>batchml report: run <code>{run}</code></h1>\n{body}\n"
        f'<footer class="muted"><p>Rendered by batchml {escape(__version__)} from '
        f"{len(records)} records and {len(history)} attempts.</p></footer>\n</body>\n</html>\n"
    )
