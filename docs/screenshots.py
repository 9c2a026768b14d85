"""Regenerate docs/dashboard.png and docs/report.png from a real demo run.

    .venv/bin/python docs/screenshots.py            # runs a small demo first if needed

It runs ``batchml demo`` (40 days, 500 customers) into ``--root`` unless a run is already there
and copies that root aside. In the copy it renders ``report --html`` and takes its screenshot;
then it queues one scoring item for a day that does not exist and lets a worker try it (a dead
item with its real error), queues the same days as a new run ``retrain``, starts two worker
processes and takes the dashboard's screenshot halfway through. Both with Debian's headless
Chromium, driven by Selenium.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.queue import open_queue
from batchml.queue.base import QueueOptions, RetryPolicy
from batchml.settings import Settings, WorkerSettings
from batchml.web.app import Dashboard, create_app
from batchml.web.server import DashboardServer
from batchml.worker.local import spawn_workers
from batchml.worker.loop import Worker

DOCS = Path(__file__).resolve().parent
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip


def batchml(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "batchml", "--root", str(root), *args], check=True)


def browser(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def add_dead_item(root: Path) -> None:
    """Queue a scoring item for a day that was never generated; one attempt makes it dead."""
    settings = Settings(root=root, worker=WorkerSettings(poll_interval=0.05, max_items=1))
    queue = open_queue(settings.resolved_queue_url, QueueOptions(retry=RetryPolicy(max_attempts=1)))
    head = queue.lineage_head(settings.run)
    queue.push(
        plan.scoring_items(
            [("2018-06-30", "datasets/training/2018-06-30.parquet")],
            run=settings.run,
            version=head.version,
        )
    )
    Worker(queue, settings.storage(), settings, "screenshot-worker").run()
    queue.close()


def shoot_report(driver: webdriver.Chrome, page: Path, out: Path) -> None:
    driver.set_window_size(1200, 1000)
    driver.get(page.as_uri())
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1200, height + 160)  # the window is taller than its viewport
    time.sleep(0.5)
    driver.save_screenshot(str(out))


def plot_refresh(driver: webdriver.Chrome) -> int:
    """The refresh tick of the metrics plot on the page (its ``?t=`` query); -1 before any."""
    src = str(driver.execute_script("return document.getElementById('plot-metrics').src"))
    tick = src.rsplit("?t=", 1)[-1] if "?t=" in src else ""
    return int(tick) if tick.isdigit() else -1


def shoot_dashboard(driver: webdriver.Chrome, root: Path, out: Path) -> None:
    """The dashboard while two worker processes retrain the lineage as a new run."""
    settings = Settings(root=root, run="retrain")
    queue = open_queue(settings.resolved_queue_url)
    days = datasets.training_days(settings.storage())  # the demo's: train, 7-day delay, test
    queue.push(plan.training_items(queue, days[:-14], run="retrain", test_days=days[-7:]))
    workers = spawn_workers(settings, 2, root / "logs")
    board = Dashboard(queue, settings.storage(), "retrain", "screenshot", refresh_seconds=1.0)
    try:
        with DashboardServer(create_app(board)) as server:
            driver.set_window_size(1280, 1180)
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 120, poll_frequency=0.2)
            wait.until(lambda d: queue.lineage_head("retrain").version >= 4)
            # the plots are fetched every third refresh: wait for one drawn after version 4
            since = plot_refresh(driver)
            wait.until(lambda d: plot_refresh(d) > since)
            time.sleep(0.3)
            wait.until(
                lambda d: d.execute_script(
                    "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
                )
            )
            driver.save_screenshot(str(out))
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=60)
        queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/batchml-screenshots"))
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args()
    if not (args.root / "runs" / "default" / "report.json").exists():
        batchml(args.root, "demo", "--days", "40", "--customers", "500", "--terminals", "1000",
                "--fresh")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="batchml-shots-") as tmp:
        root = Path(tmp) / "root"
        shutil.copytree(args.root, root)
        batchml(root, "report", "--html")
        driver = browser(str(Path(tmp) / "profile"))
        try:
            shoot_report(driver, root / "runs" / "default" / "report.html", args.out / "report.png")
            add_dead_item(root)
            shoot_dashboard(driver, root, args.out / "dashboard.png")
        finally:
            driver.quit()
    print(f"wrote {args.out / 'report.png'} and {args.out / 'dashboard.png'}")


if __name__ == "__main__":
    main()
