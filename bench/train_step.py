"""Benchmark: one ``fraud.train`` step at the end of the standard 183-day chain, step by step.

The standard days (5,000 customers, 10,000 terminals, 183 days) are simulated and stored on a
fresh root; the run is queued as ``bench/end_to_end.py`` queues it (features in blocks, a chain
of train items over every day but the last 14, each version tested on the last 7 days) and one
in-process worker drains the queue on the SQLite queue. From the records of the last
``--last`` train items it prints the median time of each part of a step: what the task reports
(``steps``: load checkpoint, load features, grow trees, metrics, test set, evaluation, save
checkpoint, publish), the rest of the item (its record), the time between one train item and
the next (seal, commit, publication, lease), and the step's fsyncs (counted and timed by
wrapping ``os.fsync`` in the worker's process: staging, seal and publication), against the
0.12 s target for the whole step.

With ``--baseline REV`` the same chain also runs with the code of git revision REV (its ``src``
exported to a temporary folder, first on ``PYTHONPATH``; this file's measuring code) on a copy
of the same stored days, and both are printed side by side with the ratio (REV / this code),
and the final params digests must be equal (same model bytes).

    .venv/bin/python bench/train_step.py                    # ~1 min on 2 idle cores
    .venv/bin/python bench/train_step.py --baseline main    # and the old code beside (~+1.5 min)
    .venv/bin/python bench/train_step.py --days 60 --customers 1000 --terminals 2000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 0.12  # seconds per step at the end of the chain
RUN = "bench"
STEPS = (
    "load checkpoint", "load features", "grow trees", "metrics", "test set", "evaluation",
    "save checkpoint", "publish",
)  # fmt: skip
COARSE = ("io", "features", "train", "evaluate")


def store_days(root: Path, customers: int, terminals: int, days: int) -> int:
    """Simulate the days and store them under ``root`` (one Parquet file per day); rows."""
    from batchml.fraud.data import datasets
    from batchml.fraud.data.simulate import SimulationConfig, simulate
    from batchml.settings import Settings

    frame = simulate(SimulationConfig(n_customers=customers, n_terminals=terminals, n_days=days))
    storage = Settings(root=root).storage()
    for day, part in datasets.split_days(frame):
        datasets.write_day(storage, day, part)
    return len(frame)


def count_fsyncs() -> list[tuple[float, float]]:
    """Wrap ``os.fsync`` so that each call appends (wall time at its end, seconds) to the list
    returned: the staging and publication flushes of a step, whatever code runs."""
    calls: list[tuple[float, float]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        started = time.perf_counter()
        real(fd)
        calls.append((time.time(), time.perf_counter() - started))

    os.fsync = fsync
    return calls


def chain(root: Path, last: int) -> dict[str, Any]:
    """Queue and drain the run on ``root`` with one in-process worker; the figures (the child
    process's work: it imports whichever batchml comes first on its path).

    A step's fsyncs are those between the end of one train task and the end of the next: the
    seal, commit and publication of the first, then the staging of the second."""
    import batchml
    from batchml.fraud import plan
    from batchml.fraud.data import datasets
    from batchml.queue.sqlite.queue import SqliteQueue
    from batchml.settings import Settings, WorkerSettings
    from batchml.worker.loop import Worker

    worker = WorkerSettings(lease_ttl=300.0, poll_interval=0.05, grace=0.0)
    settings = Settings(root=root, run=RUN, worker=worker)
    storage = settings.storage()
    days = datasets.training_days(storage)
    queue = SqliteQueue(root / "queue.db")
    queue.push(plan.training_items(queue, days[:-14], run=RUN, test_days=days[-7:]))
    fsyncs = count_fsyncs()
    started = time.perf_counter()
    code = Worker(queue, storage, settings, "bench").run()
    wall = time.perf_counter() - started
    records = [json.loads(p.read_text()) for p in (root / "runs" / RUN / "records").glob("*.json")]
    train = sorted(
        (r for r in records if r["task"] == "fraud.train"), key=lambda r: r["result"]["version"]
    )
    tail = train[-(last + 1) :]  # one more: the gap before the first of the last ones
    gaps = [b["started_at"] - a["finished_at"] for a, b in itertools.pairwise(tail)]
    windows = [(a["finished_at"], b["finished_at"]) for a, b in itertools.pairwise(tail)]
    per_step = [[s for t, s in fsyncs if lo < t <= hi] for lo, hi in windows]
    tail = tail[1:]

    def middle(values: list[float]) -> float:  # the median: a shared machine adds outliers
        return statistics.median(values) if values else 0.0

    seconds = {k: middle([r["result"]["seconds"].get(k, 0.0) for r in tail]) for k in COARSE}
    steps = {k: middle([(r["result"].get("steps") or {}).get(k, 0.0) for r in tail]) for k in STEPS}
    spans = [r["finished_at"] - r["started_at"] for r in tail]
    head = queue.lineage_head(RUN)
    return {
        "code": batchml.__file__,
        "exit": code,
        "wall": wall,
        "versions": len(train),
        "chain": sum(r["finished_at"] - r["started_at"] for r in train),
        "seconds": seconds,
        "steps": steps if any(steps.values()) else None,
        "item": middle(spans),
        "task": middle([sum(r["result"]["seconds"].values()) for r in tail]),
        "between": middle(gaps),
        "fsyncs": middle([len(f) for f in per_step]),
        "fsync_seconds": middle([sum(f) for f in per_step]),
        "digest": str(head.params_digest),
        "checkpoint_mb": os.path.getsize(root / head.checkpoint.final) / 1e6
        if head.checkpoint
        else 0,
    }


def run_child(root: Path, last: int, src: Path | None) -> dict[str, Any]:
    """:func:`chain` in a fresh process, with ``src`` first on its path when given."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    command = [sys.executable, __file__, "--child", str(root), "--last", str(last)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the chain failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def export(rev: str, into: Path) -> Path:
    """The ``src`` folder of git revision ``rev``, exported under ``into``."""
    top = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(top), "archive", rev, "src"], capture_output=True, check=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:7.1f} ms"


def report(new: dict[str, Any], old: dict[str, Any] | None, rev: str | None, last: int) -> None:
    head = f"{'':34}{'this code':>12}" + (f"{rev:>14}{'ratio':>8}" if old else "")
    print(f"\nmedian of the last {last} train steps of a {new['versions']}-version chain:")
    print(head)

    def row(label: str, value: float, before: float | None = None, note: str = "") -> None:
        line = f"  {label:32}{ms(value):>12}"
        if old is not None:
            line += f"{ms(before) if before is not None else '-':>14}"
            line += f"{before / value:7.2f}×" if before is not None and value > 0 else " " * 8
        print(line + (f"   {note}" if note else ""))

    if new["steps"]:
        print(" task, by step:")
        for name in STEPS:
            row(name, new["steps"][name], old["steps"][name] if old and old["steps"] else None)
    print(" task, by kind (seconds of the record):")
    for name in COARSE:
        row(name, new["seconds"][name], old["seconds"][name] if old else None)
    row("task", new["task"], old["task"] if old else None)
    row("record (rest of the item)", new["item"] - new["task"], old and old["item"] - old["task"])
    row("between items (seal, commit, …)", new["between"], old["between"] if old else None)
    row("  of which fsyncs (whole step)", new["fsync_seconds"], old and old["fsync_seconds"])
    total = new["item"] + new["between"]
    before = old["item"] + old["between"] if old else None
    row("whole step", total, before, f"target <= {1000 * TARGET:.0f} ms")
    grow = new["steps"]["grow trees"] if new["steps"] else new["seconds"]["train"]
    print(
        f"\nwhole step / growing its trees: {total / grow:.2f}× (a step costs what growing its "
        f"trees costs: 1×); target {1000 * TARGET:.0f} ms: "
        f"{'met' if total <= TARGET else 'NOT met'} ({1000 * total:.0f} ms)"
    )
    print(f"train chain (sum of the train items): {new['chain']:.1f} s", end="")
    print(f", {rev}: {old['chain']:.1f} s ({old['chain'] / new['chain']:.2f}×)" if old else "")
    print(f"fsyncs per step: {new['fsyncs']:.0f}", end="")
    print(f", {rev}: {old['fsyncs']:.0f}" if old else "")
    print(f"last checkpoint: {new['checkpoint_mb']:.2f} MB", end="")
    print(f", {rev}: {old['checkpoint_mb']:.2f} MB" if old else "")
    print(f"code: {new['code']}" + (f"; {rev}: {old['code']}" if old else ""))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if old is not None:
        if old["digest"] != new["digest"]:
            raise SystemExit(
                f"FAIL: final params digest {new['digest']} != {rev}'s {old['digest']}"
            )
        print(f"final params digest equal to {rev}'s: {new['digest']}")
    else:
        print(f"final params digest: {new['digest']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--last", type=int, default=20, help="train steps averaged (the last N)")
    parser.add_argument("--baseline", metavar="REV", help="also run git revision REV's code")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(chain(args.child, args.last)))
        return
    with tempfile.TemporaryDirectory(prefix="batchml-train-step-") as tmp:
        base = Path(tmp) / "days"
        rows = store_days(base, args.customers, args.terminals, args.days)
        print(f"{rows:,} transactions over {args.days} days ({args.customers} customers)")
        new_root = Path(tmp) / "new"
        shutil.copytree(base, new_root)
        new = run_child(new_root, args.last, Path(__file__).resolve().parents[1] / "src")
        old = None
        if args.baseline:
            old_root = Path(tmp) / "old"
            shutil.copytree(base, old_root)
            old = run_child(old_root, args.last, export(args.baseline, Path(tmp) / "rev"))
        report(new, old, args.baseline, args.last)


if __name__ == "__main__":
    main()
