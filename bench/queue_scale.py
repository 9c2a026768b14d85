"""Benchmark: one Redis under a million items and 32 worker processes, 10 % of them SIGKILLed.

What one Redis costs per item at scale, to size a cluster (docs/scaling.md). In one run, against a
redis-server started on a free port for the run (append-only on, as recommended), unless
``--url`` names one:

1. push ``--items`` no-op items (default 1,000,000) with ``WorkQueue.push``, ``--push-batch``
   per call: the push rate, and Redis CPU (``INFO cpu``: used_cpu_user + used_cpu_sys) and
   memory (``INFO memory``: used_memory) per million items queued;
2. optionally (``--status``) time ``batchml queue status`` on the full queue;
3. ``--workers`` processes (default 32) run the worker's loop on the queue through the public
   WorkQueue API - a lease, then each commit leases the next item (``complete_and_lease``, as
   ``batchml worker`` does in steady state) - for at most ``--seconds`` of wall time.
   ``--kill`` of them (default 10 %) are SIGKILLed at ``--kill-at`` of the budget: the time
   until each item they held is leased again (its lease runs out ``--lease-ttl`` seconds after
   it was taken) is measured. At the end of the budget the live workers give back what they
   hold (``release``). Printed: items/s drained, Redis CPU per million items drained, memory
   per million done items (derived: see below);
4. exactly-once check: every worker logs each lease it got and each commit that returned;
   the items held by killed workers are resolved against the queue (done with the killed
   worker's token = its commit landed before the kill). Every commit must be of a distinct
   item, their number must equal the queue's ``done`` count, nothing may stay leased, and
   done + ready must be every item pushed;
5. the Redis time of reclaiming expired leases, measured apart (one ``lease`` call, server
   time from ``INFO commandstats``, with 0, ``--kill`` and 100 expired leases to reclaim);
6. optionally (``--sqlite-workers``, default 4; 0 skips) the same loop on the SQLite queue with
   fewer workers and items, for comparison.

On a small machine 32 processes cannot drain a million items in a few minutes: the drain is
bounded by ``--seconds`` and what was done is measured; the time a full drain would take is
EXTRAPOLATED from the measured rate and printed as such. Memory per done item is derived from
the final used_memory by removing the still-ready items at the measured per-queued-item size.

    .venv/bin/python bench/queue_scale.py                       # defaults: a few minutes
    .venv/bin/python bench/queue_scale.py --items 100000 --seconds 20 --status
    .venv/bin/python bench/queue_scale.py --url redis://10.0.0.5:6379/0 --seconds 600
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from batchml.errors import LeaseLost
from batchml.queue import Lease, State, WorkQueue, open_queue
from batchml.queue.base import Commit, ItemSpec

RECLAIM_SIZES = (0, None, 100)  # None: as many leases as workers killed
POLL_INTERVAL = 0.5  # batchml's worker.poll_interval: the wait when nothing is ready


# -- the lease call: the one place the workers lease (switch it to a batched lease here) --------


def commit_and_lease(
    queue: WorkQueue, held: list[Lease], worker: str, ttl: float, batch: int = 1
) -> tuple[list[Lease], list[Lease]]:
    """Commit the leases in ``held`` and lease the next item(s): the worker's steady state.

    Returns the leases whose commit landed and the new leases (none when nothing was ready or
    the last commit was refused). A refused commit (the lease ran out and another worker took
    the item: LeaseLost) is dropped, as batchml's worker drops it. With nothing held it only
    leases. ``batch`` > 1 is ``worker --prefetch``: every commit and the next ``batch`` leases
    in one call (``complete_and_lease_many``); a refused batch is committed item by item."""
    if batch > 1:
        return _commit_and_lease_many(queue, held, worker, ttl, batch)
    if not held:
        first = queue.lease(worker, ttl)
        return [], [] if first is None else [first]
    committed = []
    for lease in held[:-1]:
        try:
            queue.complete(lease.item.id, lease.token)
            committed.append(lease)
        except LeaseLost:
            pass
    last = held[-1]
    try:
        nxt = queue.complete_and_lease(last.item.id, last.token, worker=worker, ttl=ttl)
    except LeaseLost:
        return committed, []
    return [*committed, last], [] if nxt is None else [nxt]


def _commit_and_lease_many(
    queue: WorkQueue, held: list[Lease], worker: str, ttl: float, batch: int
) -> tuple[list[Lease], list[Lease]]:
    if not held:
        return [], queue.lease_many(worker, ttl, batch)
    commits = [Commit(lease.item.id, lease.token) for lease in held]
    try:
        return held, queue.complete_and_lease_many(commits, worker=worker, ttl=ttl, n=batch)
    except LeaseLost:  # all or nothing: settle one by one, as the worker's Settle does
        committed = []
        for lease in held:
            try:
                queue.complete(lease.item.id, lease.token)
                committed.append(lease)
            except LeaseLost:
                pass
        return committed, []


# -- Redis ----------------------------------------------------------------------------------


@contextmanager
def local_redis() -> Iterator[str]:
    """A redis-server on a free port in a temporary folder, append-only on (everysec)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="batchml-scale-") as folder:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
             "--appendonly", "yes", "--save", "", "--logfile", f"{folder}/redis.log"],
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            for _ in range(500):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(timeout=30)


#: the commands that run the queue's operations (FCALL, or EVALSHA without Functions)
SCRIPT_CALLS = ("fcall", "evalsha")


@dataclass(frozen=True)
class Server:
    """What INFO says about the server at one moment."""

    cpu: float  # seconds: used_cpu_user + used_cpu_sys
    memory: int  # bytes: used_memory
    script_usec: float  # server time spent in FCALL and EVALSHA since the last CONFIG RESETSTAT

    @classmethod
    def read(cls, admin: redis.Redis[str]) -> Server:
        cpu, memory = admin.info("cpu"), admin.info("memory")
        stats = admin.info("commandstats")
        usec = sum(float(stats.get(f"cmdstat_{c}", {"usec": 0})["usec"]) for c in SCRIPT_CALLS)
        return cls(
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            int(memory["used_memory"]),
            usec,
        )


def per_million(value: float, items: int) -> float:
    return value / max(items, 1) * 1_000_000


# -- the workers ----------------------------------------------------------------------------


def worker_main(
    url: str, log_path: str, ttl: float, ready: Any, start: Any, stop_at: Any, batch: int = 1
) -> None:
    """One worker process: the worker's loop until nothing is ready or the budget is over.

    Logs its id (``W id 0``), ``L id token`` for each lease it got, ``C id token`` for each
    commit that returned, ``X id token`` for each refused one (its lease was lost) and
    ``R id token`` for each lease given back (unbuffered: a SIGKILL loses nothing written)."""
    queue = open_queue(url, create=False)
    worker = f"scale-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"W {worker} 0\n".encode())
    ready.put(os.getpid())
    start.wait()
    deadline = stop_at.value
    held: list[Lease] = []
    while time.time() < deadline:
        committed, nxt = commit_and_lease(queue, held, worker, ttl, batch)
        lines = [f"C {lease.item.id} {lease.token}\n" for lease in committed]
        lines += [f"X {lease.item.id} {lease.token}\n" for lease in held if lease not in committed]
        lines += [f"L {lease.item.id} {lease.token}\n" for lease in nxt]
        if lines:
            os.write(fd, "".join(lines).encode())
        lost, held = len(committed) < len(held), nxt
        if not held and not lost:  # as batchml's worker: exit once drained, else wait for
            if queue.drained():  # the leases of others to run out
                break
            time.sleep(POLL_INTERVAL)
    for lease in held:  # the budget is over: give back what is held, as a stopped worker does
        queue.release(lease.item.id, lease.token)
        os.write(fd, f"R {lease.item.id} {lease.token}\n".encode())
    os.close(fd)
    queue.close()


@dataclass
class Log:
    """One worker's log: its commits, and the leases it neither committed nor gave back."""

    worker: str
    commits: list[str]
    open_leases: dict[str, int]
    refused: int  # commits refused: the lease had run out and another worker took the item

    @classmethod
    def read(cls, path: Path) -> Log:
        commits: list[str] = []
        leases: dict[str, int] = {}
        worker, refused = "", 0
        for line in path.read_text().splitlines():
            kind, item_id, token = line.split()
            if kind == "W":
                worker = item_id
            elif kind == "L":
                leases[item_id] = int(token)
            else:
                if leases.pop(item_id, None) != int(token):
                    raise SystemExit(f"{path}: {line!r} ends a lease it does not hold")
                if kind == "C":
                    commits.append(item_id)
                refused += kind == "X"
        return cls(worker, commits, leases, refused)


@dataclass
class Drain:
    done: int
    seconds: float
    killed_held: dict[str, int]  # item id -> token, held by the killed workers when they died
    relet_after: list[float]  # per such item: seconds from the kill until it was leased again
    commits: list[str]
    refused: int
    landed: int  # commits of killed workers that landed before they could log them


def run_workers(url: str, n: int, kill: int, options: argparse.Namespace, folder: Path) -> Drain:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, start = ctx.Queue(), ctx.Event()
    stop_at = ctx.Value("d", 0.0)
    logs = [folder / f"worker-{i}.log" for i in range(n)]
    procs = [
        ctx.Process(
            target=worker_main,
            args=(url, str(log), options.lease_ttl, ready, start, stop_at, options.batch),
        )
        for log in logs
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    began = time.time()
    stop_at.value = began + options.seconds
    start.set()
    queue = open_queue(url, create=False)
    killed_held: dict[str, int] = {}
    relet_after: list[float] = []
    if kill:
        time.sleep(max(options.seconds * options.kill_at, 0.0))
        killed_at = time.time()
        for proc in procs[:kill]:
            os.kill(proc.pid or 0, signal.SIGKILL)
        for proc in procs[:kill]:
            proc.join()
        killed = {Log.read(log).worker for log in logs[:kill]}
        # what they held: the queue knows (a worker killed inside complete_and_lease may hold
        # an item its log never named)
        held = queue.items([State.LEASED])
        killed_held = {item.id: item.token for item in held if item.worker in killed}
        relet_after = wait_relet(queue, killed_held, killed_at, stop_at.value)
    for proc in procs[kill:]:
        proc.join()
    seconds = min(time.time(), stop_at.value) - began
    commits = [item for log in logs for item in Log.read(log).commits]
    refused = sum(Log.read(log).refused for log in logs)
    for log in logs[kill:]:
        if left := Log.read(log).open_leases:
            raise SystemExit(f"{log}: a live worker exited holding {sorted(left)}")
    logged = len(commits)
    for log in logs[:kill]:  # a killed worker's last commit may have landed unlogged
        for item_id, token in Log.read(log).open_leases.items():
            item = queue.get(item_id)
            if item.state == State.DONE and item.token == token:
                commits.append(item_id)
    queue.close()
    landed = len(commits) - logged
    return Drain(len(commits), seconds, killed_held, relet_after, commits, refused, landed)


def wait_relet(queue: WorkQueue, held: dict[str, int], since: float, until: float) -> list[float]:
    """Poll the items the killed workers held until each is leased again (a higher token);
    seconds from the kill for each."""
    pending, after = dict(held), []
    while pending and time.time() < until + 1:
        for item_id, token in list(pending.items()):
            item = queue.get(item_id)
            if item.token > token:
                after.append(time.time() - since)
                del pending[item_id]
        time.sleep(0.02)
    return after


# -- the phases ------------------------------------------------------------------------------


def push(queue: WorkQueue, items: int, batch: int) -> float:
    started = time.perf_counter()
    for first in range(0, items, batch):
        ids = range(first, min(first + batch, items))
        queue.push([ItemSpec(payload={"task": "noop", "n": i}, id=f"n{i}") for i in ids])
    return time.perf_counter() - started


def status_seconds(url: str) -> str:
    """Wall time of one ``batchml queue status`` on the queue (a CLI process of its own), and
    how it ended."""
    with tempfile.TemporaryDirectory(prefix="batchml-scale-root-") as root:
        command = [sys.executable, "-m", "batchml", "--root", root, "--queue", url]
        subprocess.run([*command, "queue", "status", "--help"], check=True, capture_output=True)
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "queue", "status"], check=False, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
    if done.returncode == 0:
        return f"{seconds:.2f} s"
    last = (done.stderr or done.stdout).strip().splitlines()[-1:]
    return f"exit {done.returncode} after {seconds:.2f} s: {' '.join(last)}"


def wait_not_busy(admin: redis.Redis[str]) -> float:
    """Seconds until Redis answers again (a script a timed-out client left keeps it busy)."""
    started = time.perf_counter()
    while True:
        try:
            admin.ping()
            return time.perf_counter() - started
        except redis.exceptions.BusyLoadingError:
            time.sleep(0.5)
        except redis.ResponseError as exc:
            if "BUSY" not in str(exc):
                raise
            time.sleep(0.5)


def reclaim_usec(admin: redis.Redis[str], base_url: str, expired: int, repeat: int = 5) -> float:
    """Server µs of one ``lease`` call that first reclaims ``expired`` run-out leases (the
    least of ``repeat`` samples: a busy machine only ever slows one down)."""
    samples = []
    for _ in range(repeat):
        url = f"{base_url}?name=reclaim-{uuid.uuid4().hex[:8]}"
        queue = open_queue(url)
        queue.push([ItemSpec(payload={"n": i}, id=f"r{i}") for i in range(expired + 1)])
        for _ in range(expired):
            queue.lease("gone", 0.5)
        time.sleep(0.6)
        admin.config_resetstat()
        lease = queue.lease("reclaimer", 60)
        samples.append(Server.read(admin).script_usec)
        if lease is None or queue.counts()[State.READY] != expired:
            raise SystemExit(f"reclaim of {expired} leases: {queue.counts()}")
        queue.purge()
        queue.close()
    return min(samples)


def sqlite_rate(workers: int, items: int, options: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="batchml-scale-sqlite-") as folder:
        url = f"sqlite:///{folder}/queue.db"
        queue = open_queue(url)
        push(queue, items, options.push_batch)
        queue.close()
        drain = run_workers(url, workers, 0, options, Path(folder))
        return drain.done / drain.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an existing Redis (default: start one for this run)")
    parser.add_argument("--items", type=int, default=1_000_000, help="items pushed")
    parser.add_argument("--push-batch", type=int, default=10_000, help="items per push call")
    parser.add_argument("--workers", type=int, default=32, help="worker processes")
    parser.add_argument("--seconds", type=float, default=60.0, help="drain budget (wall)")
    parser.add_argument("--kill", type=int, help="workers SIGKILLed (default: 10 %%)")
    parser.add_argument("--kill-at", type=float, default=0.25, help="of the budget")
    parser.add_argument("--lease-ttl", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--batch", type=int, default=1, help="items per lease call (worker --prefetch)"
    )
    parser.add_argument("--status", action="store_true", help="time `batchml queue status`")
    parser.add_argument("--sqlite-workers", type=int, default=4, help="0: no SQLite line")
    parser.add_argument("--sqlite-items", type=int, default=20_000)
    options = parser.parse_args()
    if options.kill is None:
        options.kill = round(options.workers / 10)
    if options.url:
        measure(options.url, options)
        return
    with local_redis() as url:
        measure(url, options)


def measure(base_url: str, options: argparse.Namespace) -> None:
    admin = redis.Redis.from_url(base_url, decode_responses=True)
    url = f"{base_url}?name=scale-{uuid.uuid4().hex[:8]}"
    n, workers, kill = options.items, options.workers, options.kill
    print(f"Redis {admin.info('server')['redis_version']} at {base_url}; {n:,} no-op items, "
          f"{workers} worker processes ({kill} SIGKILLed), budget {options.seconds:g} s, "
          f"lease TTL {options.lease_ttl:g} s, {os.cpu_count()} cores\n")  # fmt: skip
    queue = open_queue(url)
    empty = Server.read(admin)
    pushed_in = push(queue, n, options.push_batch)
    full = Server.read(admin)
    queued_bytes = (full.memory - empty.memory) / n
    print(f"push          {n / pushed_in:12,.0f} items/s  ({options.push_batch:,} per call, "
          f"{pushed_in:.1f} s)")  # fmt: skip
    print(f"  Redis CPU   {per_million(full.cpu - empty.cpu, n):12,.1f} s per million pushed")
    print(f"  memory      {queued_bytes:12,.0f} B per item queued = "
          f"{queued_bytes:,.0f} MB per million")  # fmt: skip
    if options.status:
        print(f"`batchml queue status` on {n:,} ready items: {status_seconds(url)}")
        busy = wait_not_busy(admin)
        if busy > 0.1:
            print(f"  Redis then stayed BUSY (a script still running) for {busy:.1f} s more")
    with tempfile.TemporaryDirectory(prefix="batchml-scale-logs-") as folder:
        admin.config_resetstat()
        before = Server.read(admin)
        drain = run_workers(url, workers, kill, options, Path(folder))
        after = Server.read(admin)
    counts = queue.counts()
    rate = drain.done / drain.seconds
    print(f"\ndrain         {rate:12,.0f} items/s  ({drain.done:,} done in {drain.seconds:.1f} s "
          f"by {workers} processes, {kill} of them killed)")  # fmt: skip
    cpu_item = (after.cpu - before.cpu) / max(drain.done, 1)
    print(f"  Redis CPU   {cpu_item * 1e6:12,.1f} s per million drained "
          f"(= {cpu_item * 1e6:.1f} µs per item; FCALL/EVALSHA, as wall time in the server, "
          f"{(after.script_usec - before.script_usec) / max(drain.done, 1):.1f} µs)")  # fmt: skip
    busy = (after.cpu - before.cpu) / drain.seconds
    print(f"  one Redis core saturates at ~{1 / cpu_item:,.0f} items/s (1 / CPU per item); "
          f"Redis was busy {busy:.0%} of one core during the drain")  # fmt: skip
    done_bytes = (after.memory - empty.memory - counts[State.READY] * queued_bytes) / max(
        drain.done, 1
    )
    print(f"  memory      {after.memory - empty.memory:12,} B used by the queue now; derived "
          f"{done_bytes:,.0f} B per done item = {done_bytes:,.0f} MB per million")  # fmt: skip
    if drain.done < n:
        print(f"  EXTRAPOLATED: all {n:,} items at this rate in {n / rate:,.0f} s "
              f"(not measured: the budget ended with {counts[State.READY]:,} ready)")  # fmt: skip
    print(f"\nlease reclaim: {len(drain.killed_held)} items held by the killed workers; "
          f"leased again {fmt_list(drain.relet_after)} s after the kill "
          f"(lease TTL {options.lease_ttl:g} s)")  # fmt: skip
    base = 0.0
    for size in RECLAIM_SIZES:
        expired = kill if size is None else size
        usec = reclaim_usec(admin, base_url, expired)
        base = usec if expired == 0 else base
        extra = f" (+{(usec - base) / expired:.0f} µs per lease)" if expired else ""
        print(f"  one lease call reclaiming {expired:4} expired leases: {usec:8.0f} µs of "
              f"server time{extra}")  # fmt: skip
    check(queue, drain, counts, n)
    queue.purge()
    queue.close()
    if options.sqlite_workers:
        items = options.sqlite_items
        sqlite = sqlite_rate(options.sqlite_workers, items, options)
        print(f"\nSQLite queue, {options.sqlite_workers} workers, {items:,} items: "
              f"{sqlite:,.0f} items/s (Redis, {workers} workers: {rate:,.0f})")  # fmt: skip


def fmt_list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in sorted(values)) or "-"


def check(queue: WorkQueue, drain: Drain, counts: dict[State, int], n: int) -> None:
    """Every item committed at most once, each commit counted by the queue, none lost."""
    distinct = len(set(drain.commits))
    problems = []
    if distinct != len(drain.commits):
        problems.append(f"{len(drain.commits) - distinct} items committed twice")
    if counts[State.DONE] != len(drain.commits):
        problems.append(f"queue says {counts[State.DONE]} done, workers {len(drain.commits)}")
    if counts[State.LEASED]:
        problems.append(f"{counts[State.LEASED]} items still leased")
    if counts[State.DONE] + counts[State.READY] != n:
        problems.append(f"done + ready = {counts[State.DONE] + counts[State.READY]} of {n}")
    for item_id in drain.killed_held:
        if queue.get(item_id).state not in (State.DONE, State.READY):
            problems.append(f"{item_id}, held by a killed worker, is {queue.get(item_id).state}")
    print(
        f"\nexactly once: {len(drain.commits):,} commits of {distinct:,} distinct items "
        f"({drain.refused} refused: lease lost; {drain.landed} by killed workers found done "
        "with their token), "
        f"queue done {counts[State.DONE]:,}, ready {counts[State.READY]:,}, leased "
        f"{counts[State.LEASED]}: {'OK' if not problems else 'FAILED: ' + '; '.join(problems)}"
    )
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
