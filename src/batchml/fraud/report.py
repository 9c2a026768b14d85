"""The fraud workload's part of the report: its metrics, its data, its final model's curves.

Registered in the ``batchml.report_sections`` entry-point group (batchml's ``pyproject.toml``),
so the generic report (:mod:`batchml.report`) shows it for any run with ``fraud.*`` records and
for no other, without importing this module itself.

* report.json: each version made by ``fraud.train`` keeps its ``train`` and ``test`` metrics,
  ``params_digest``, ``parent_version`` and ``seconds``; ``sections.fraud.per_day`` holds the
  transactions and frauds per day;
* report.txt: each such version's block is the tutorial's (accuracy, ROC AUC, average
  precision on the training and testing data, card precision@k on the testing data);
* report.html: ``metrics`` (test and training metrics per version, plotted and tabulated),
  ``data`` (transactions and frauds per day), ``curves`` (ROC and precision–recall of the final
  model, scored again from its checkpoint: :mod:`batchml.fraud.evaluation.curves`);
* dashboard: ``metrics`` (test ROC AUC and average precision per version) and
  ``transactions-per-day``.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from batchml.observe.charts import PALETTE, Series, bar_chart, line_chart
from batchml.report.html import empty, fmt, table
from batchml.report.sections import ReportContext, ReportSection

#: the tasks whose records make a run a fraud run
TASKS = ("fraud.features", "fraud.train", "fraud.score")
#: the fields of a fraud.train result kept in its version's report.json entry
VERSION_FIELDS = ("params_digest", "parent_version", "train", "test", "seconds")

#: (key in versions[].test / train, label); card precision appears only where recorded
METRICS = (
    ("roc_auc", "ROC AUC"),
    ("average_precision", "average precision"),
    ("card_precision_at_k", "card precision@100"),
    ("accuracy", "accuracy"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def version_lines(version: dict[str, Any]) -> list[str]:
    """The tutorial's lines of a version's report.txt block (after ``---``)."""
    train, test = version.get("train") or {}, version.get("test") or {}
    return [
        f"Accuracy on training data: {_fmt(train.get('accuracy'))}",
        f"Accuracy on testing data: {_fmt(test.get('accuracy'))}",
        f"ROC AUC on training data: {_fmt(train.get('roc_auc'))}",
        f"ROC AUC on testing data: {_fmt(test.get('roc_auc'))}",
        f"Average precision on training data: {_fmt(train.get('average_precision'))}",
        f"Average precision on testing data: {_fmt(test.get('average_precision'))}",
        f"Card precision@{test.get('top_k', 100)} on testing data: "
        f"{_fmt(test.get('card_precision_at_k'))}",
    ]


def _present(versions: list[dict[str, Any]], part: str) -> list[tuple[str, str]]:
    return [
        (key, label)
        for key, label in METRICS
        if any((v.get(part) or {}).get(key) is not None for v in versions)
    ]


def metrics_section(report: dict[str, Any]) -> str:
    versions = report["versions"]
    if not versions:
        return empty("metrics", "Metrics per version", "No trained version.")
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
        f"{table(headers, rows, 'versions')}</details></section>"
    )


def per_day(records: Sequence[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(day, transactions, frauds) from features records, else from training records."""
    days: dict[str, tuple[int, int]] = {}
    for r in records:
        result = r.get("result") or {}
        if r.get("task") == "fraud.features" and "rows" in result:
            day = str((r.get("payload") or {}).get("dataset"))
            days[day] = (int(result["rows"]), int(result.get("frauds", 0)))
        blocks = result.get("days") if r.get("task") == "fraud.features" else None
        for day, counts in (blocks or {}).items():  # a features item of a block of days
            days[str(day)] = (int(counts["rows"]), int(counts.get("frauds", 0)))
    for r in records:
        result = r.get("result") or {}
        train = result.get("train") or {}
        if r.get("task") == "fraud.train" and result.get("dataset") not in days and train:
            days[str(result["dataset"])] = (int(train["rows"]), int(train.get("frauds", 0)))
    return [(day, *days[day]) for day in sorted(days)]


def data_section(records: Sequence[dict[str, Any]]) -> str:
    days = per_day(records)
    if not days:
        return empty("data", "Transactions and frauds per day", "No data.")
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


def final_curves(ctx: ReportContext) -> dict[str, Any] | None:
    """ROC and precision–recall of the current lineage's last version, when fraud.train made
    it and recorded a test set."""
    if not ctx.lineage or ctx.lineage[-1].get("task") != "fraud.train":
        return None
    from batchml.fraud.evaluation.curves import version_curves  # scikit-learn: only when drawn

    return version_curves(ctx.storage, ctx.lineage[-1])


def dashboard_metrics_plot(versions: Sequence[dict[str, Any]]) -> str:
    """The dashboard's plot: test ROC AUC and average precision per version."""
    series = []
    for k, (key, label) in enumerate(METRICS[:2]):
        points = [
            (float(v["version"]), float(v["test"][key]))
            for v in versions
            if (v.get("test") or {}).get(key) is not None
        ]
        series.append(Series(label, points, PALETTE[k]))
    return line_chart(
        "metrics", "Test metrics per lineage version", series, x_label="lineage version",
        y_label="score", y_range=(0.0, 1.0), size=(520, 280),
    )  # fmt: skip


class FraudSection(ReportSection):
    """The fraud workload's section (see the module's docstring)."""

    name = "fraud"
    title = "Fraud detection"
    covers_metrics = True

    def applies(self, records: Sequence[dict[str, Any]]) -> bool:
        return any(r.get("task") in TASKS for r in records)

    def version_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("task") != "fraud.train":
            return {}
        result = record.get("result") or {}
        return {key: result.get(key) for key in VERSION_FIELDS}

    def version_lines(self, version: dict[str, Any]) -> list[str] | None:
        return version_lines(version) if version.get("task") == "fraud.train" else None

    def json(self, ctx: ReportContext) -> Any:
        days = per_day(ctx.records)
        return {"per_day": [{"day": d, "transactions": n, "frauds": f} for d, n, f in days]}

    def html(self, ctx: ReportContext) -> str:
        return "\n".join(
            (
                metrics_section(ctx.report),
                data_section(ctx.records),
                curves_section(final_curves(ctx)),
            )
        )

    def plots(self, ctx: ReportContext) -> dict[str, str]:
        plots = {"metrics": dashboard_metrics_plot(ctx.report["versions"])}
        days = per_day(ctx.records)
        if days:
            plots["transactions-per-day"] = bar_chart(
                "transactions-per-day", "Transactions per day", [d for d, _, _ in days],
                [float(n) for _, n, _ in days], y_label="transactions", size=(520, 280),
            )  # fmt: skip
        return plots
