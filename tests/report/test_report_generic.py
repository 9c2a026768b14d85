"""The report knows no workload: a user task that keeps its own lineage gets one.

``tests.sample_tasks:running_mean`` keeps a running mean as its "model" (a JSON checkpoint,
one lineage version per item). A real worker runs a chain of them; ``batchml report`` (text,
JSON, HTML) then shows its versions and its numeric result fields, and no fraud section. And
the report and dashboard packages import nothing of the fraud workload.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.storage import Storage
from batchml.web.app import Dashboard, create_app
from batchml.web.server import DashboardServer
from tests.report.test_report_html import parse
from tests.sample_tasks import SAMPLE_TASKS
from tests.support.cli import REPO, run_cli

BATCHES = {"b1": [1.0, 2.0, 3.0], "b2": [10.0], "b3": [4.0, 6.0]}
TASK = "tests.sample_tasks:running_mean"


def _push(q: SqliteQueue) -> None:
    """b1 -> b2 -> b3: each item depends on the one before (the lineage's order)."""
    names, specs = list(BATCHES), []
    for k, name in enumerate(names):
        payload = {"task": TASK, "run": "default", "name": name, "values": BATCHES[name]}
        after = (f"mean-{names[k - 1]}",) if k else ()
        specs.append(ItemSpec(payload=payload, id=f"mean-{name}", depends_on=after))
    q.push(specs)


@pytest.fixture(scope="module")
def averaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run of three running_mean items, done by one real worker."""
    root = tmp_path_factory.mktemp("generic") / "root"
    settings = Settings(
        root=root, worker=WorkerSettings(lease_ttl=30, poll_interval=0.02), tasks=SAMPLE_TASKS
    )
    q = SqliteQueue(root / "queue.db", QueueOptions(retry=RetryPolicy(backoff_base=0.01)))
    _push(q)
    from batchml.worker.loop import Worker

    assert Worker(q, settings.storage(), settings, "w-mean").run() == exitcodes.OK
    assert q.lineage_head("default").version == 3
    return root, q.url


def test_a_user_lineage_task_gets_a_report(
    capsys: pytest.CaptureFixture[str], averaged: tuple[Path, str]
) -> None:
    root, url = averaged
    cli = ("--root", str(root), "--queue", url)
    shown = run_cli(capsys, *cli, "report", "--html")
    assert shown.code == 0, shown.err
    text = (root / "runs/default/report.txt").read_text()
    assert text in shown.out
    assert text.count("Training dataset:") == 3
    assert [ln.split(": ")[1] for ln in text.splitlines() if ln.startswith("Training")] == [
        "b1", "b2", "b3",
    ]  # fmt: skip
    blocks = text.split("Report generated on:")[1:]
    for block, (count, mean, size) in zip(
        blocks, [(3, "2.000000", 3), (4, "4.000000", 1), (6, "4.333333", 2)], strict=True
    ):
        assert f"\ncount: {count}\nmean: {mean}\n" in block and f"batch.size: {size}" in block
    assert "ROC AUC" not in text and "Card precision" not in text and "unit" not in text

    report = json.loads((root / "runs/default/report.json").read_text())
    versions = report["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["dataset"] for v in versions] == ["b1", "b2", "b3"]
    assert [v["task"] for v in versions] == [TASK] * 3
    assert [v["metrics"]["mean"] for v in versions] == [2.0, 4.0, 26 / 6]
    assert versions[-1]["metrics"] == {
        "batch.max": 6.0, "batch.size": 2, "count": 6, "mean": 26 / 6,
    }  # fmt: skip
    final = Path(root) / versions[-1]["checkpoint"]
    assert json.loads(final.read_text()) == {"count": 6, "total": 26.0}
    assert report["sections"] == {} and report["stale_records"] == 0
    assert report["committed_items"] == {TASK: 3}
    assert "train" not in versions[0] and "test" not in versions[0]

    page_text = (root / "runs/default/report.html").read_text()
    page = parse(page_text)
    assert {"metric-mean", "metric-count", "metric-batch.max", "timeline"} <= set(page.plots)
    assert not {"roc", "precision-recall", "transactions-per-day"} & set(page.plots)
    assert page.keyed["metrics.mean"] == [f"{v['metrics']['mean']:.4f}" for v in versions]
    assert page.keyed["lineage.sha256"] == [v["sha256"] for v in versions]
    assert 'id="curves"' not in page_text and 'id="data"' not in page_text
    assert page.outcomes == {"done": 3}

    again = run_cli(capsys, *cli, "report", "--html")
    assert again.code == 0
    assert (root / "runs/default/report.html").read_text() == page_text  # same bytes


def test_the_dashboard_plots_the_user_task_s_results(averaged: tuple[Path, str]) -> None:
    root, _ = averaged
    q = SqliteQueue(root / "queue.db")

    board = Dashboard(q, Storage(root), "default")
    with DashboardServer(create_app(board)) as server:
        with urllib.request.urlopen(server.url + "/api/lineage", timeout=10) as answer:
            versions = json.loads(answer.read())["versions"]
        with urllib.request.urlopen(server.url + "/api/plots", timeout=10) as answer:
            plots = [p["name"] for p in json.loads(answer.read())["plots"]]
        with urllib.request.urlopen(server.url + "/api/plots/metrics.svg", timeout=10) as answer:
            svg = answer.read().decode()
    assert [v["metrics"]["count"] for v in versions] == [3, 4, 6]
    assert plots == ["metrics", "throughput"]  # no section applies to this run
    for name in ("mean", "count", "batch.max"):
        assert f'data-series="{name}"' in svg, name


def test_a_section_passed_by_the_caller_adds_its_parts(averaged: tuple[Path, str]) -> None:
    from batchml.report.render import build_context
    from batchml.report.sections import ReportContext, ReportSection

    class _Counting(ReportSection):
        """A section of a workload of our own: shown only where its task ran."""

        name, title = "means", "Means"

        def applies(self, records: object) -> bool:
            return any(r.get("task") == TASK for r in records)  # type: ignore[attr-defined]

        def html(self, ctx: ReportContext) -> str:
            return f'<section id="means"><p data-key="means.n">{len(ctx.lineage)}</p></section>'

        def version_fields(self, record: dict[str, object]) -> dict[str, object]:
            return {"version": -1, "values": record["payload"]["values"]}  # type: ignore[index]

        def json(self, ctx: ReportContext) -> object:
            return {"versions": len(ctx.lineage)}

    root, _ = averaged
    q = SqliteQueue(root / "queue.db")
    ctx, chosen = build_context(Storage(root), "default", q, [_Counting()], roll=False)
    assert [s.name for s in chosen] == ["means"]
    assert ctx.report["sections"] == {"means": {"versions": 3}}
    first = ctx.report["versions"][0]
    assert first["version"] == 1 and first["values"] == BATCHES["b1"]  # added, never replaced


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            found.add(id(body[0].value))
    return found


def _strings(package: Path) -> dict[str, str]:
    """Every string literal of the package's modules (docstrings aside): text -> module."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and id(node) not in docs:
                found.setdefault(str(node.value), path.name)
    return found


def _imports(package: Path) -> set[str]:
    names: set[str] = set()
    for path in [package] if package.is_file() else package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("package", ["report", "web", "cli/report_cmd.py", "cli/dashboard_cmd.py"])
def test_report_and_web_import_nothing_of_the_fraud_workload(package: str) -> None:
    imported = _imports(REPO / "src" / "batchml" / package)
    assert imported, package
    fraud = sorted(n for n in imported if n == "batchml.fraud" or n.startswith("batchml.fraud."))
    assert fraud == [], fraud
    code = (
        "import sys, batchml.report, batchml.report.html, batchml.web.app; "
        "print(sorted(m for m in sys.modules if m.startswith('batchml.fraud')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


#: what code that knows the fraud workload names: its tasks, its metrics
FRAUD_WORDS = ("fraud", "roc_auc", "average_precision", "card_precision")


@pytest.mark.parametrize("package", ["report", "web"])
def test_report_and_web_name_no_fraud_task_or_metric(package: str) -> None:
    """No record is chosen by a fraud task's name, no fraud field read by its name (the code's
    strings; docstrings may say what the fraud workload's section adds)."""
    strings = _strings(REPO / "src" / "batchml" / package)
    named = {s: m for s, m in strings.items() if any(w in s.lower() for w in FRAUD_WORDS)}
    assert named == {}, named
    static = (REPO / "src" / "batchml" / package / "static").glob("*")
    for path in static:
        assert not any(w in path.read_text().lower() for w in FRAUD_WORDS), path


def test_after_a_purge_the_user_lineage_s_old_versions_are_stale(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Given the chain run to v3, purged, and b1, b2 run again (head v2), then the report shows
    v1 and v2 and counts the record of the old v3, still on disk, as stale."""
    from batchml.worker.loop import Worker

    root = tmp_path / "root"
    settings = Settings(
        root=root, worker=WorkerSettings(lease_ttl=30, poll_interval=0.02), tasks=SAMPLE_TASKS
    )
    q = SqliteQueue(root / "queue.db", QueueOptions(retry=RetryPolicy(backoff_base=0.01)))
    _push(q)
    assert Worker(q, settings.storage(), settings, "w-1").run() == exitcodes.OK
    cli = ("--root", str(root), "--queue", q.url)
    assert run_cli(capsys, *cli, "queue", "purge", "--yes").code == 0
    q = SqliteQueue(root / "queue.db", QueueOptions(retry=RetryPolicy(backoff_base=0.01)))
    specs = [
        ItemSpec(payload={"task": TASK, "run": "default", "name": "b1", "values": [5.0]}, id="b1"),
        ItemSpec(
            payload={"task": TASK, "run": "default", "name": "b2", "values": [7.0]},
            id="b2",
            depends_on=("b1",),
        ),
    ]
    q.push(specs)
    assert Worker(q, settings.storage(), settings, "w-2").run() == exitcodes.OK

    shown = run_cli(capsys, *cli, "report", "--json")
    assert shown.code == 0, shown.err
    report = json.loads(shown.out)
    assert [(v["item_id"], v["metrics"]["mean"]) for v in report["versions"]] == [
        ("b1", 5.0), ("b2", 6.0),
    ]  # fmt: skip
    assert report["stale_records"] == 3  # mean-b1..b3 of the purged queue
    assert "3 stale records ignored" in (root / "runs/default/report.txt").read_text()


def test_a_broken_or_foreign_section_entry_point_is_one_clear_error() -> None:
    from importlib.metadata import EntryPoint

    from batchml.errors import ConfigError
    from batchml.report.sections import ENTRY_POINT_GROUP, installed_sections

    def point(name: str, value: str) -> EntryPoint:
        return EntryPoint(name, value, ENTRY_POINT_GROUP)

    fraud = point("fraud", "batchml.fraud.report:FraudSection")
    assert [s.name for s in installed_sections([fraud, fraud])] == ["fraud"]
    with pytest.raises(ConfigError, match=r"'gone' \(no_such_pkg.mod:S.*cannot be loaded"):
        installed_sections([point("gone", "no_such_pkg.mod:S")])
    with pytest.raises(ConfigError, match=r"'dumps' .* is no ReportSection but function"):
        installed_sections([point("dumps", "json:dumps")])
    with pytest.raises(ConfigError, match="registered twice"):
        installed_sections([fraud, point("fraud", "tests.sample_tasks:noop")])
