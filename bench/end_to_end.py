"""Benchmark: the standard 183 days through import → queue → workers → features → training →
evaluation, with 1 and with 2 worker processes, on the SQLite queue.

For each worker count, on a fresh storage root: the simulated days are imported (validated
Parquet, one file per day), the run is queued (a ``fraud.features`` item per block of 7 days,
a chain of ``fraud.train`` items over every day but the last 14, each version tested on the
last 7 days after the 7-day delay), N ``batchml worker`` processes drain the queue, and the head is
evaluated with the handbook's protocol. Printed: wall times, transactions per second (all
featurised days over the workers' wall time), the 2-vs-1 speed-up, each worker's peak memory
(its maximum resident set size, from ``os.wait4``), and where the workers' time went: the
``seconds`` the tasks report in their records (features, training, evaluation, I/O), the rest
of each item (records, setup), and queue, commit and idle time (what remains of N × wall).

Then the reference, bench/bare_reference.py, on the same root: the same features computed once
and the same lineage trained in memory, in one process with no queue, checkpoints or records.
Its final params digest must equal the queue run's head. Printed beside the targets: batchml
with 2 workers against the bare script (target: no slower), the share of worker time spent
between items (leasing, committing, publishing: target < 5 %; idle waits for the train chain
are counted apart), and peak RSS per worker (target < 400 MB).

    .venv/bin/python bench/end_to_end.py                     # ~10 min on 2 idle cores
    .venv/bin/python bench/end_to_end.py --days 60 --customers 1000 --terminals 2000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchml.fraud import plan
from batchml.fraud.data import datasets
from batchml.fraud.data.simulate import SimulationConfig, simulate
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
    between_items: float
    head_digest: str
    root: Path
    train_days: tuple[str, str]
    test_days: tuple[str, str]


def import_days(root: Path, config: SimulationConfig) -> tuple[list[str], int, float]:
    """Simulate, then import every day as a validated Parquet file; (days, rows, seconds)."""
    frame = simulate(config)
    storage = Settings(root=root).storage()
    started = time.perf_counter()
    days = []
    for day, part in datasets.split_days(frame):
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


POLL = 0.2  # seconds between a worker's polls when nothing is ready


def breakdown(root: Path, workers: int, wall: float) -> tuple[dict[str, float], float, float]:
    """Worker time by category, from the records of committed items; the train chain; and the
    time between one item's end and the worker's next item (lease, commit, publish, records)
    where no idle wait fits in (gaps shorter than one poll; longer ones count one median gap,
    the rest being idle)."""
    seconds: dict[str, float] = defaultdict(float)
    busy = chain = 0.0
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for path in sorted((root / "runs" / RUN / "records").glob("*.json")):
        record = json.loads(path.read_text())
        spent = record["finished_at"] - record["started_at"]
        busy += spent
        spans[str(record.get("worker"))].append((record["started_at"], record["finished_at"]))
        if record["task"] == "fraud.train":
            chain += spent
        for name, value in (record["result"].get("seconds") or {}).items():
            seconds[name] += value
    gaps = []
    for items in spans.values():
        items.sort()
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(items)]
    short = sorted(g for g in gaps if g < POLL) or [0.0]
    median = short[len(short) // 2]
    between = sum(g if g < POLL else median for g in gaps)
    seconds["other, in items (setup, records)"] = busy - sum(seconds.values())
    seconds["between items (lease, commit, publish)"] = between
    seconds["idle (nothing ready), start, exit"] = workers * wall - busy - between
    return dict(seconds), chain, between


def run(root: Path, config: SimulationConfig, workers: int) -> Outcome:
    days, rows, import_seconds = import_days(root, config)
    settings = Settings(root=root, run=RUN)
    queue = SqliteQueue(root / "queue.db")
    specs = plan.training_items(queue, days[:-14], run=RUN, test_days=days[-7:])
    queue.push(specs)
    started = time.perf_counter()
    extra = ["--lease-ttl", "120", "--poll", str(POLL)]
    procs = spawn_workers(settings, workers, root / "logs", extra)
    codes, peaks = reap(procs)
    wall = time.perf_counter() - started
    started = time.perf_counter()
    result = evaluate(settings.storage(), queue, RUN)
    evaluate_seconds = time.perf_counter() - started
    shares, chain, between = breakdown(root, workers, wall)
    head = queue.lineage_head(RUN)
    return Outcome(
        workers, rows, import_seconds, wall, evaluate_seconds, codes, peaks, shares, chain,
        result["metrics"], between, str(head.params_digest), root,
        (days[0], days[-15]), (days[-7], days[-1]),
    )  # fmt: skip


def bare(o: Outcome) -> dict[str, Any]:
    """Run bench/bare_reference.py on the outcome's root; its JSON line."""
    script = Path(__file__).with_name("bare_reference.py")
    command = [sys.executable, str(script), "--root", str(o.root)]
    command += ["--train", ":".join(o.train_days), "--test", ":".join(o.test_days)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


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
        reference = bare(outcomes[-1])
    print(f"\n{outcomes[0].rows:,} transactions over {args.days} days ({args.customers} customers)")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    by_n = {o.workers: o for o in outcomes}
    if 1 in by_n and 2 in by_n:
        print(f"speed-up with 2 workers: {by_n[1].wall / by_n[2].wall:.2f}×")
    print(
        f"bare reference (1 process, no queue): {reference['seconds']:7.1f} s "
        f"(features {reference['features_seconds']:.1f} s), peak RSS "
        f"{reference['maxrss_mb']:.0f} MB"
    )
    for o in outcomes:
        if o.head_digest != reference["params_digest"]:
            raise SystemExit(
                f"FAIL: {o.workers} worker(s) head params digest {o.head_digest} differs from "
                f"the bare reference's {reference['params_digest']}"
            )
        ratio = o.wall / reference["seconds"]
        share = 100 * o.between_items / (o.workers * o.wall)
        print(
            f"batchml {o.workers} worker(s) / bare: {ratio:5.2f}×  (target <= 1 with 2 workers); "
            f"between items {share:4.1f} % (target < 5 %); peak RSS per worker "
            f"{max(o.maxrss_mb):.0f} MB (target < 400 MB)"
        )
    print("final model: same params digest as the bare reference:", reference["params_digest"])


if __name__ == "__main__":
    main()
