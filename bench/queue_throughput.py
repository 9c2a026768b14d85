"""Benchmark: the Redis queue's lease+complete rate against raw round trips and the tutorial.

Side by side, in one run, against the same Redis (one started on a free port for this run, with
append-only persistence as recommended, unless ``--url`` names one):

* raw ``PING`` round trips per second, from one redis-py client (``Redis.ping``): the ceiling
  of any one-worker loop, and the yardstick of the target; sampled before and between the
  runs, the best sample counts (a busy machine only ever slows a sample down). For reference
  also PING over one connection held between calls, the way batchml calls its scripts
  (redis-py's per-command path - a connection taken from its pool and given back - costs about
  as much client time as a round trip on a slow CPU);
* batchml's worker loop on no-op items, one worker, then four worker processes: one ``lease``,
  then ``complete_and_lease`` per item (the commit leases the next item, as the worker does);
* for comparison, the two-call loop (``lease``, then ``complete``, per item), one worker;
* the Kubernetes tutorial's pattern re-implemented (``BRPOPLPUSH`` + ``SETEX`` lease key, then
  ``LREM`` + ``DEL``, plus its two ``LLEN`` calls per loop), one worker, then four.

Each loop is measured ``--repeat`` times (default 3), PING before and between them, and the best
of each is printed: on a shared machine a neighbour only ever slows a sample down, so the best
estimates what the machine can do, for the yardstick and the loops alike. It prints items per
second, the ratios, the round trips each loop paid per item (the commands its client sent,
counted by the server: ``INFO commandstats``) and the server time they took per item (both from
the best sample).

    .venv/bin/python bench/queue_throughput.py
    .venv/bin/python bench/queue_throughput.py --url redis://10.0.0.5:6379/0 --items 20000
    .venv/bin/python bench/queue_throughput.py --repeat 1   # one sample of each, faster
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis

from batchml.queue import open_queue
from batchml.queue.base import ItemSpec

TARGET_OF_PING = 0.5  # one batchml worker should reach half the PING rate (≤ 2 round trips)


@contextmanager
def local_redis() -> Iterator[str]:
    """A redis-server on a free port in a temporary folder, append-only on (everysec)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="batchml-bench-") as folder:
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
            server.wait(timeout=10)


#: the commands each loop sends (commands run inside batchml's scripts are not round trips)
BATCHML_COMMANDS = ("evalsha",)
TUTORIAL_COMMANDS = ("llen", "brpoplpush", "setex", "lrem", "del")


def command_stats(client: redis.Redis[str], commands: tuple[str, ...]) -> tuple[int, float]:
    """Calls of ``commands`` the server has run since its statistics were reset, and the
    microseconds it spent in them."""
    stats: Mapping[str, Any] = client.info("commandstats")
    picked = [stats.get(f"cmdstat_{name}", {"calls": 0, "usec": 0}) for name in commands]
    return sum(int(s["calls"]) for s in picked), sum(float(s["usec"]) for s in picked)


def ping_rate(url: str, seconds: float) -> float:
    """PINGs per second from a redis-py client."""
    client = redis.Redis.from_url(url, decode_responses=True)
    return _rate(client.ping, seconds)


def held_ping_rate(url: str, seconds: float) -> float:
    """PINGs per second over one connection held between calls (as batchml's ScriptCaller)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    pool: Any = client.connection_pool
    conn = pool.get_connection()

    def ping() -> None:
        conn.send_packed_command([b"*1\r\n$4\r\nPING\r\n"])
        conn.read_response()

    try:
        return _rate(ping, seconds)
    finally:
        pool.release(conn)


def _rate(call: Callable[[], Any], seconds: float) -> float:
    call()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            call()
        n += 100
    return n / (time.perf_counter() - started)


# -- batchml -----------------------------------------------------------------------------------


def fill_batchml(url: str, items: int) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = open_queue(f"{url}?name={name}")
    queue.purge()
    queue.push([ItemSpec(payload={"task": "noop", "n": i}, id=f"n{i}") for i in range(items)])
    queue.close()
    return f"{url}?name={name}"


def batchml_worker(queue_url: str, start: Any, out: Any) -> None:
    """One worker as batchml's runs: a lease, then each commit leases the next item, until
    nothing is ready; reports (items, t0, t1)."""
    queue = open_queue(queue_url)
    worker = f"bench-{uuid.uuid4().hex[:6]}"
    start.wait()
    done, t0 = 0, time.perf_counter()
    lease = queue.lease(worker, 60)
    while lease is not None:
        lease = queue.complete_and_lease(lease.item.id, lease.token, worker=worker, ttl=60)
        done += 1
    out.put((done, t0, time.perf_counter()))


def two_call_worker(queue_url: str, start: Any, out: Any) -> None:
    """The loop before ``complete_and_lease``: lease, then complete, two round trips per item."""
    queue = open_queue(queue_url)
    worker = f"bench-{uuid.uuid4().hex[:6]}"
    start.wait()
    done, t0 = 0, time.perf_counter()
    while (lease := queue.lease(worker, 60)) is not None:
        queue.complete(lease.item.id, lease.token)
        done += 1
    out.put((done, t0, time.perf_counter()))


# -- the tutorial's pattern (rediswq.py of "Fine Parallel Processing Using a Work Queue") -------


def fill_tutorial(url: str, items: int) -> str:
    name = f"tutorial-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url, decode_responses=True)
    for first in range(0, items, 10_000):
        client.lpush(name, *(f"n{i}" for i in range(first, min(first + 10_000, items))))
    return name


def tutorial_worker(url: str, name: str, start: Any, out: Any) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    session = uuid.uuid4().hex
    processing, lease_prefix = f"{name}:processing", f"{name}:leased_by_session:"
    start.wait()
    done, t0 = 0, time.perf_counter()
    while True:
        waiting, in_progress = client.llen(name), client.llen(processing)  # rediswq.empty()
        if waiting == 0 and in_progress == 0:
            break
        item = client.brpoplpush(name, processing, timeout=1)  # rediswq.lease()
        if item is None:
            continue
        client.setex(lease_prefix + item, 60, session)
        client.lrem(processing, 0, item)  # rediswq.complete()
        client.delete(lease_prefix + item)
        done += 1
    out.put((done, t0, time.perf_counter()))


def cleanup(url: str, key: str) -> None:
    """Delete what one measurement left: a batchml queue (by URL) or the tutorial's lists."""
    if "?name=" in key:
        open_queue(key).purge()
    else:
        redis.Redis.from_url(url).delete(key, f"{key}:processing")


def run_workers(target: Callable[..., None], args: tuple[Any, ...], n: int) -> tuple[int, float]:
    """Start ``n`` processes on ``target(*args, start, out)``; (items done, wall seconds)."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, out)) for _ in range(n)]
    for proc in procs:
        proc.start()
    time.sleep(0.5 + 0.5 * n)  # let every process import and connect before the start
    start.set()
    reports = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    done = sum(r[0] for r in reports)
    return done, max(r[2] for r in reports) - min(r[1] for r in reports)


#: what is measured: label, filler, worker loop, worker processes, commands it sends
RUNS: tuple[tuple[str, Callable[[str, int], str], Callable[..., None], int, tuple[str, ...]], ...]
RUNS = (
    ("batchml, 1 worker", fill_batchml, batchml_worker, 1, BATCHML_COMMANDS),
    ("batchml, 4 worker processes", fill_batchml, batchml_worker, 4, BATCHML_COMMANDS),
    ("batchml two-call loop, 1 worker", fill_batchml, two_call_worker, 1, BATCHML_COMMANDS),
    ("tutorial pattern, 1 worker", fill_tutorial, tutorial_worker, 1, TUTORIAL_COMMANDS),
    ("tutorial pattern, 4 worker processes", fill_tutorial, tutorial_worker, 4, TUTORIAL_COMMANDS),
)


Row = tuple[str, float, float, float]  # label, items/s, round trips and server µs per item


def measure(url: str, items: int, ping_seconds: float, repeat: int) -> None:
    admin = redis.Redis.from_url(url, decode_responses=True)
    version = admin.info("server")["redis_version"]
    print(f"Redis {version} at {url}; {items} no-op items per one-worker run\n")
    sample = ping_seconds / (repeat * len(RUNS) + 1)
    pings: list[float] = []
    held: list[float] = []
    best: dict[str, Row] = {}
    for _ in range(repeat):
        for label, fill, target, workers, commands in RUNS:
            pings.append(ping_rate(url, sample))
            held.append(held_ping_rate(url, sample))
            row = run_one(admin, url, label, items * workers, fill, target, workers, commands)
            if label not in best or row[1] > best[label][1]:
                best[label] = row
    pings.append(ping_rate(url, sample))
    held.append(held_ping_rate(url, sample))
    report([best[run[0]] for run in RUNS], max(pings), max(held), len(pings), repeat)


def run_one(
    admin: redis.Redis[str], url: str, label: str, items: int,
    fill: Callable[[str, int], str], target: Callable[..., None], workers: int,
    commands: tuple[str, ...],
) -> Row:  # fmt: skip
    """One sample of one loop, on a queue of its own."""
    key = fill(url, items)
    args = (url, key) if target is tutorial_worker else (key,)
    admin.config_resetstat()
    done, seconds = run_workers(target, args, workers)
    calls, usec = command_stats(admin, commands)
    cleanup(url, key)
    return label, done / seconds, calls / max(done, 1), usec / max(done, 1)


def report(rows: list[Row], ping: float, held: float, samples: int, repeat: int) -> None:
    print(f"{'PING round trips (redis-py client)':38} {ping:10,.0f} /s  (best of {samples})")
    print(f"{'PING over a held connection':38} {held:10,.0f} /s  (best of {samples})")
    print(f"(each loop below: the best of {repeat})")
    for label, rate, trips, usec in rows:
        print(
            f"{label:38} {rate:10,.0f} items/s  {trips:4.1f} round trips and "
            f"{usec:5.1f} µs of server time per item"
        )
    one, four, two_calls, tut_one, tut_four = (row[1] for row in rows)
    print()
    print(f"batchml 1 worker / PING            {one / ping:6.2f}  (target ≥ {TARGET_OF_PING})")
    print(f"batchml 4 workers / 1 worker       {four / one:6.2f}  (target > 1)")
    print(f"batchml two-call loop / PING       {two_calls / ping:6.2f}")
    print(f"batchml 1 worker / held-conn. PING {one / held:6.2f}")
    print(f"batchml / tutorial, 1 worker       {one / tut_one:6.2f}")
    print(f"batchml / tutorial, 4 workers      {four / tut_four:6.2f}")
    met = one >= TARGET_OF_PING * ping and four > one
    print(f"\ntargets {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an existing Redis (default: start one for this run)")
    parser.add_argument("--items", type=int, default=5000, help="items per one-worker run")
    parser.add_argument("--ping-seconds", type=float, default=3.0, help="per repetition")
    parser.add_argument("--repeat", type=int, default=3, help="samples of each loop")
    options = parser.parse_args()
    if options.url:
        measure(options.url, options.items, options.ping_seconds * options.repeat, options.repeat)
        return
    with local_redis() as url:
        measure(url, options.items, options.ping_seconds * options.repeat, options.repeat)


if __name__ == "__main__":
    main()
