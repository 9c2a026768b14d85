"""``batchml report --html``: plots present, numbers equal to report.json, reproducible bytes."""

from __future__ import annotations

import json
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.fraud import plan
from batchml.observe.charts import nice_ticks, num
from batchml.queue.base import QueueOptions, RetryPolicy
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.worker.loop import Worker
from tests.support.cli import run_cli
from tests.support.fraud_data import small_root


class Page(HTMLParser):
    """What the tests check: plots, keyed cells, bars and timeline outcomes, external links."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: list[str] = []
        self.keyed: dict[str, list[str]] = {}
        self.bars: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.external: list[str] = []
        self.scripts = 0
        self._key: str | None = None
        self._plot: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self._plot = a.get("data-plot")
            self.plots.append(str(self._plot))
        if tag == "rect" and "data-label" in a:
            self.bars[str(self._plot)] += 1
        if tag == "rect" and "data-outcome" in a:
            self.outcomes[str(a["data-outcome"])] += 1
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href"):
            if a.get(name):
                self.external.append(str(a[name]))
        self._key = a.get("data-key")

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            self.keyed.setdefault(self._key, []).append(data)
            self._key = None


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run trained on 8 small days and tested on 3, with one abandoned attempt on the way."""
    tmp = tmp_path_factory.mktemp("report")
    root = tmp / "root"
    days = small_root(tmp / "cache", root)
    settings = Settings(root=root, worker=WorkerSettings(lease_ttl=30, poll_interval=0.02))
    q = SqliteQueue(root / "queue.db", QueueOptions(retry=RetryPolicy(backoff_base=0.01)))
    q.push(plan.training_items(q, days[20:28], run="default", test_days=days[-3:]))
    ghost = q.lease("ghost-worker", ttl=0.05)  # a worker that dies holding its first item
    assert ghost is not None
    time.sleep(0.1)
    assert Worker(q, settings.storage(), settings, "w-report").run() == exitcodes.OK
    return root, q.url


def test_report_html_has_the_plots_and_the_numbers_of_report_json(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str]
) -> None:
    root, url = trained
    result = run_cli(capsys, "--root", str(root), "--queue", url, "report", "--html")
    assert result.code == 0, result.err
    html_path = root / "runs/default/report.html"
    assert f"wrote {html_path}" in result.out
    report = json.loads((root / "runs/default/report.json").read_text())
    page = parse(html_path.read_text())

    assert set(page.plots) == {
        "metrics-test", "metrics-train", "transactions-per-day", "frauds-per-day", "roc",
        "precision-recall", "timeline",
    }  # fmt: skip
    assert page.scripts == 0 and page.external == []  # opens offline
    versions = report["versions"]
    assert len(versions) == 8
    for key in ("roc_auc", "average_precision", "accuracy"):
        shown = page.keyed[f"test.{key}"]
        assert shown == [f"{v['test'][key]:.4f}" for v in versions], key
        assert page.keyed[f"train.{key}"] == [f"{v['train'][key]:.4f}" for v in versions]
    final = report["final"]["test"]
    assert page.keyed["curves.roc_auc"] == [f"{final['roc_auc']:.4f}"]
    assert page.keyed["curves.average_precision"] == [f"{final['average_precision']:.4f}"]
    assert page.keyed["curves.rows"][0].startswith(f"{final['rows']:,} test transactions")
    # 8 training days and 3 test days have a features record: one bar each
    assert page.bars == {"transactions-per-day": 11, "frauds-per-day": 11}
    # 3 features items (blocks: the 3 test days, 7 + 1 training days) and 8 train items
    # committed, plus the ghost's abandoned attempt
    assert page.outcomes == {"done": 11, "expired": 1}


def test_report_html_is_reproducible(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str]
) -> None:
    root, url = trained
    pages = []
    for _ in range(2):
        assert run_cli(capsys, "--root", str(root), "--queue", url, "report", "--html").code == 0
        pages.append((root / "runs/default/report.html").read_bytes())
    assert pages[0] == pages[1]


def test_chart_helpers() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.0, 1034.0) == [0.0, 500.0, 1000.0]
    assert [num(-0.04), num(12.0), num(3.14159)] == ["0", "12", "3.1"]


def test_the_fraud_section_comes_through_the_section_interface(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str]
) -> None:
    """report.json and the dashboard get the fraud parts from the registered section: its
    per-day data, and the dashboard's test-metrics and transactions plots."""
    import urllib.request

    from batchml.report.sections import installed_sections
    from batchml.storage import Storage
    from batchml.web.app import Dashboard, create_app
    from batchml.web.server import DashboardServer

    root, url = trained
    assert [s.name for s in installed_sections()] == ["fraud"]
    assert run_cli(capsys, "--root", str(root), "--queue", url, "report").code == 0
    report = json.loads((root / "runs/default/report.json").read_text())
    days = report["sections"]["fraud"]["per_day"]
    assert len(days) == 11 and all(d["transactions"] > 0 for d in days)
    assert report["versions"][-1]["metrics"]["test.roc_auc"] == report["final"]["test"]["roc_auc"]

    board = Dashboard(SqliteQueue(root / "queue.db"), Storage(root), "default")
    with DashboardServer(create_app(board)) as server:

        def get(path: str) -> str:
            with urllib.request.urlopen(server.url + path, timeout=10) as answer:
                return str(answer.read().decode())

        plots = [p["name"] for p in json.loads(get("/api/plots"))["plots"]]
        assert plots == ["metrics", "throughput", "transactions-per-day"]
        metrics = get("/api/plots/metrics.svg")
        assert 'data-series="ROC AUC"' in metrics and 'data-series="seconds.io"' not in metrics
        assert get("/api/plots/transactions-per-day.svg").count("data-label=") == 11
