"""``batchml dashboard``: the JSON endpoints, and the page driven in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchml.observe.charts import bar_chart
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, State, WorkerInfo
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.report.sections import ReportContext, ReportSection
from batchml.storage import Storage
from batchml.web.app import Dashboard, create_app
from batchml.web.server import DashboardServer
from tests.support.ci import in_ci

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "t0ken-for-tests"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1000",
)  # fmt: skip


@pytest.fixture
def queue(tmp_path: Path) -> SqliteQueue:
    """Three items done, two ready, one dead (with its error), and one worker at work."""
    q = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=RetryPolicy(max_attempts=1)))
    q.push([ItemSpec(payload={"task": "noop", "n": n}, id=f"item-{n}") for n in range(6)])
    for _ in range(3):
        lease = q.lease("w-done", ttl=30)
        assert lease
        q.complete(lease.item.id, lease.token, {})
    lease = q.lease("w-done", ttl=30)
    assert lease and lease.item.id == "item-3"
    q.fail("item-3", lease.token, "ValueError: day 2018-04-03 has no rows")
    q.report_worker(WorkerInfo(id="w-browser", host="node-7", pid=42, started_at=q.clock()))
    return q


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """Plain HTTP requests to a dashboard served on a thread (the real server, no test client)."""

    def __init__(self, server: DashboardServer) -> None:
        self.server = server

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        req = urllib.request.Request(
            self.server.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return Answer(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), exc.read().decode())

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body: object = None, token: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body else None
        return self.request("POST", path, data, headers)


@contextmanager
def serving(queue: SqliteQueue, tmp_path: Path, token: str | None = TOKEN) -> Iterator[Client]:
    board = Dashboard(queue, Storage(tmp_path / "root"), "default", token)
    with DashboardServer(create_app(board)) as server:
        yield Client(server)


def test_endpoints_answer_json_and_svg(queue: SqliteQueue, tmp_path: Path) -> None:
    with serving(queue, tmp_path) as c:
        assert c.get("/api/config").json() == {
            "run": "default", "queue": queue.url, "can_requeue": True, "refresh_seconds": 3.0,
        }  # fmt: skip
        status = c.get("/api/status").json()
        assert status["counts"] == {
            "waiting": 0, "ready": 2, "leased": 0, "done": 3, "dead": 1, "blocked": 0,
        }  # fmt: skip
        assert status["dead"][0]["error"] == "ValueError: day 2018-04-03 has no rows"
        assert c.get("/api/lineage").json() == {"run": "default", "versions": []}
        for plot in ("metrics", "throughput"):
            answer = c.get(f"/api/plots/{plot}.svg")
            assert answer.headers["content-type"] == "image/svg+xml"
            assert f'data-plot="{plot}"' in answer.text
        assert '<script src="/static/app.js">' in c.get("/").text
        assert c.get("/static/app.js").status == 200
        assert c.get("/api/status", headers={"Host": "rebound.example"}).status == 400


def test_requeue_needs_the_token_and_read_only_refuses(queue: SqliteQueue, tmp_path: Path) -> None:
    with serving(queue, tmp_path, token=None) as read_only:
        assert read_only.post("/api/requeue", token=TOKEN).status == 403
    with serving(queue, tmp_path) as c:
        assert c.post("/api/requeue").status == 401
        assert c.post("/api/requeue", token="wrong").status == 401
        assert c.post("/api/requeue", b"[1,", token=TOKEN).status == 400
        assert c.post("/api/requeue", {"ids": [3]}, token=TOKEN).status == 400
        assert queue.counts()[State.DEAD] == 1
        answer = c.post("/api/requeue", {"ids": ["item-3"]}, token=TOKEN)
        assert answer.json() == {"requeued": 1, "dead": 0}
    assert queue.get("item-3").state == State.READY


def _browser_available() -> None:
    """In CI, install Debian's chromium when missing (and fail if that fails); else skip."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing and in_ci():
        script = Path(__file__).resolve().parents[2] / ".ci" / "install-system-deps"
        subprocess.run(["bash", str(script)], check=False, timeout=540)
        missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
        if missing:
            pytest.fail(f"{', '.join(missing)} still missing after {script}")
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: apt-get install chromium chromium-driver")


@pytest.fixture
def browser() -> Iterator[object]:
    _browser_available()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="batchml-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class _PlottingSection(ReportSection):
    """A workload's section with one dashboard plot, for any run."""

    name = "widgets"

    def applies(self, records: object) -> bool:
        return True

    def html(self, ctx: ReportContext) -> str:
        return ""

    def plots(self, ctx: ReportContext) -> dict[str, str]:
        return {"per-widget": bar_chart("per-widget", "Per widget", ["a"], [1.0], y_label="n")}


@pytest.mark.slow
@pytest.mark.timeout(600)  # may install chromium first, in CI
def test_page_shows_the_queue_and_requeues_only_with_the_token(
    queue: SqliteQueue, tmp_path: Path, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    board = Dashboard(
        queue, Storage(tmp_path / "root"), "default", TOKEN, refresh_seconds=0.5,
        sections=[_PlottingSection()],
    )  # fmt: skip
    with DashboardServer(create_app(board)) as server:
        driver = browser
        driver.get(server.url + "/")  # type: ignore[attr-defined]
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))

        def text(element_id: str) -> str:
            return str(driver.find_element(By.ID, element_id).text)  # type: ignore[attr-defined]

        states = ("waiting", "ready", "leased", "done", "dead", "blocked")
        assert [text(f"count-{s}") for s in states] == ["0", "2", "0", "3", "1", "0"]
        assert text("count-total") == "6"
        assert "w-browser" in text("workers") and "node-7" in text("workers")
        assert "ValueError: day 2018-04-03 has no rows" in text("dead")

        def src(element_id: str) -> str:
            return str(driver.find_element(By.ID, element_id).get_attribute("src"))  # type: ignore[attr-defined]

        # the page draws the plots the server lists, a report section's included
        assert "/api/plots/metrics.svg" in src("plot-metrics")
        assert "/api/plots/throughput.svg" in src("plot-throughput")
        assert "/api/plots/per-widget.svg" in src("plot-per-widget")

        # Given no token typed, when "Requeue" is clicked, then the server refuses it
        driver.find_element(By.CSS_SELECTOR, "#dead button.requeue").click()  # type: ignore[attr-defined]
        wait.until(lambda d: "refused (401)" in d.find_element(By.ID, "message").text)
        assert queue.counts()[State.DEAD] == 1

        # Given the token, when "Requeue" is clicked, then the item is ready again
        driver.find_element(By.ID, "token").send_keys(TOKEN)  # type: ignore[attr-defined]
        driver.find_element(By.CSS_SELECTOR, "#dead button.requeue").click()  # type: ignore[attr-defined]
        wait.until(lambda d: "requeued 1 item(s)" in d.find_element(By.ID, "message").text)
        assert queue.get("item-3").state == State.READY
        wait.until(lambda d: d.find_element(By.ID, "count-dead").text == "0")
        assert text("count-ready") == "3"
