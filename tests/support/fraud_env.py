"""A small simulated fraud workload on a fresh storage root and SQLite queue, for the tests.

50 days of 300 customers and 600 terminals (~25 k transactions): days 0-35 train the lineage,
days 43-49 are its test week (after the 7-day label delay).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.fraud.data.simulate import SimulationConfig, simulate
from batchml.fraud.models.lineage import ModelConfig
from batchml.queue.base import QueueOptions, RetryPolicy, WorkQueue
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings, WorkerSettings
from batchml.storage import Storage
from batchml.worker.loop import Worker

SMALL = SimulationConfig(n_customers=300, n_terminals=600, n_days=50)
TRAIN_DAYS = 36
TEST_WEEK = slice(43, 50)


@dataclass
class Env:
    root: Path
    storage: Storage
    queue: WorkQueue
    settings: Settings
    days: list[str]

    @property
    def train_days(self) -> list[str]:
        return self.days[:TRAIN_DAYS]

    @property
    def test_days(self) -> list[str]:
        return self.days[TEST_WEEK]


def make_env(root: Path, run: str = "default") -> Env:
    """Store the small simulated days under ``root``; an empty queue beside them."""
    settings = Settings(
        root=root,
        run=run,
        worker=WorkerSettings(lease_ttl=30.0, poll_interval=0.02, grace=0.0),
    )
    storage = settings.storage()
    days = []
    for day, part in datasets.split_days(simulate(SMALL)):
        datasets.write_day(storage, day, part)
        days.append(day)
    retry = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_factor=1.0)
    queue = SqliteQueue(root / "queue.db", QueueOptions(retry=retry))
    return Env(root=root, storage=storage, queue=queue, settings=settings, days=days)


def run_workers(env: Env, n: int = 1) -> list[int]:
    """Run ``n`` in-process workers (threads) until the queue is drained; their exit codes."""
    codes = [0] * n

    def work(k: int) -> None:
        codes[k] = Worker(env.queue, env.storage, env.settings, f"w{k}").run()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return codes


def train(
    env: Env,
    model: ModelConfig | None = None,
    workers: int = 1,
    days: list[str] | None = None,
    test_days: list[str] | None = None,
) -> list[int]:
    """Queue the lineage (default: on the training days, tested on the test week); run it."""
    specs = plan.training_items(
        env.queue,
        env.train_days if days is None else days,
        run=env.settings.run,
        test_days=env.test_days if test_days is None else test_days,
        model=model,
    )
    env.queue.push(specs)
    return run_workers(env, workers)
