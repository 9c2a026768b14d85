"""Benchmark: the standard 183 days through import → queue → workers → features → training →
evaluation, with 1 and with 2 worker processes, on the SQLite queue.

For each worker count, on a fresh storage root: the simulated days are imported (validated
Parquet, one file per day), the run is queued (a ``fraud.features`` item per day, a chain of
``fraud.train`` items over every day but the last 14, each version tested on the last 7 days
after the 7-day delay), N ``batchml worker`` processes drain the queue, and the head is
evaluated with the handbook's protocol. Printed: wall times, transactions per second (all
featurised days over the workers' wall time), the 2-vs-1 speed-up, each worker's peak memory
(its maximum resident set size, from ``os.wait4``), and where the workers' time went: the
``seconds`` the tasks report in their records (features, training, evaluation, I/O), the rest
of each item (records, setup), and queue, commit and idle time (what remains of N × wall).

    .venv/bin/python bench/end_to_end.py                     # ~10 min on 2 idle cores
    .venv/bin/python bench/end_to_end.py --days 60 --customers 1000 --terminals 2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.fraud.data.simulate import SimulationConfig, simulate, split_by_day
from batchml.fraud.evaluation.evaluate import evaluate
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.settings import Settings
from batchml.worker.local import spawn_workers

RUN = "bench"


@dataclass
class Outcome:
    workers: int
    rows: int
    import_seconds: float
    wall: float
    evaluate_seconds: float
    exit_codes: list[int]
    maxrss_mb: list[float]
    breakdown: dict[str, float]
    chain_seconds: float
    metrics: dict[str, Any]


def import_days(root: Path, config: SimulationConfig) -> tuple[list[str], int, float]:
    """Simulate, then import every day as a validated Parquet file; (days, rows, seconds)."""
    frame = simulate(config)
    storage = Settings(root=root).storage()
    started = time.perf_counter()
    days = []
    for day, part in split_by_day(frame):
        datasets.write_day(storage, day, part)
        days.append(day)
    return days, len(frame), time.perf_counter() - started


def reap(procs: Sequence[subprocess.Popen[bytes]]) -> tuple[list[int], list[float]]:
    """Wait for each worker; its exit code and peak resident memory (MB)."""
    codes, peaks = [], []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        codes.append(proc.returncode)
        peaks.append(usage.ru_maxrss / 1024)  # kilobytes on Linux
    return codes, peaks


def breakdown(root: Path, workers: int, wall: float) -> tuple[dict[str, float], float]:
    """Worker time by category, from the records of committed items; and the train chain."""
    seconds: dict[str, float] = defaultdict(float)
    busy = chain = 0.0
    for path in sorted((root / "runs" / RUN / "records").glob("*.json")):
        record = json.loads(path.read_text())
        spent = record["finished_at"] - record["started_at"]
        busy += spent
        if record["task"] == "fraud.train":
            chain += spent
        for name, value in (record["result"].get("seconds") or {}).items():
            seconds[name] += value
    seconds["other, in items (setup, records)"] = busy - sum(seconds.values())
    seconds["queue, commit, publish, idle"] = workers * wall - busy
    return dict(seconds), chain


def run(root: Path, config: SimulationConfig, workers: int) -> Outcome:
    days, rows, import_seconds = import_days(root, config)
    settings = Settings(root=root, run=RUN)
    queue = SqliteQueue(root / "queue.db")
    specs = plan.training_items(queue, days[:-14], run=RUN, test_days=days[-7:])
    queue.push(specs)
    started = time.perf_counter()
    procs = spawn_workers(settings, workers, root / "logs", ["--lease-ttl", "120"])
    codes, peaks = reap(procs)
    wall = time.perf_counter() - started
    started = time.perf_counter()
    result = evaluate(settings.storage(), queue, RUN)
    evaluate_seconds = time.perf_counter() - started
    shares, chain = breakdown(root, workers, wall)
    return Outcome(
        workers, rows, import_seconds, wall, evaluate_seconds, codes, peaks, shares, chain,
        result["metrics"],
    )  # fmt: skip


def report(o: Outcome) -> None:
    rows = o.rows
    print(f"\n{o.workers} worker(s): exit codes {o.exit_codes}")
    print(f"  import            {o.import_seconds:7.1f} s")
    print(f"  workers (wall)    {o.wall:7.1f} s   {rows / o.wall:,.0f} transactions/s")
    print(f"  train chain       {o.chain_seconds:7.1f} s   (sum of the train items: sequential)")
    print(f"  evaluation        {o.evaluate_seconds:7.1f} s")
    print(f"  peak memory       {', '.join(f'{mb:.0f} MB' for mb in o.maxrss_mb)} (per worker)")
    total = o.workers * o.wall
    print(f"  worker time       {total:7.1f} s = {o.workers} × wall, of which:")
    for name, value in sorted(o.breakdown.items(), key=lambda kv: -kv[1]):
        print(f"    {name:34} {value:7.1f} s  {100 * value / total:5.1f} %")
    m = o.metrics
    print(
        f"  head model        AUC {m['roc_auc']:.4f}  AP {m['average_precision']:.4f}  "
        f"CP@100 {m['card_precision_at_k']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--keep", type=Path, help="keep the storage roots under this folder")
    args = parser.parse_args()
    config = SimulationConfig(
        n_customers=args.customers, n_terminals=args.terminals, n_days=args.days
    )
    counts = [int(n) for n in args.workers.split(",")]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="batchml-e2e-") as tmp:
        base = args.keep or Path(tmp)
        for n in counts:
            root = base / f"workers-{n}"
            outcome = run(root, config, n)
            report(outcome)
            outcomes.append(outcome)
    print(f"\n{outcomes[0].rows:,} transactions over {args.days} days ({args.customers} customers)")
    by_n = {o.workers: o for o in outcomes}
    if 1 in by_n and 2 in by_n:
        print(f"speed-up with 2 workers: {by_n[1].wall / by_n[2].wall:.2f}×")


if __name__ == "__main__":
    main()
