"""Benchmark: the Redis queue's lease+complete rate against raw round trips and the tutorial.

Side by side, in one run, against the same Redis (one started on a free port for this run, with
append-only persistence as recommended, unless ``--url`` names one):

* raw ``PING`` round trips per second, from one redis-py client (``Redis.ping``): the ceiling
  of any one-worker loop, and the yardstick of the target; sampled before and between the
  runs, the best sample counts (a busy machine only ever slows a sample down). For reference
  also PING over one connection held between calls, the way batchml calls its scripts
  (redis-py's per-command path - a connection taken from its pool and given back - costs about
  as much client time as a round trip on a slow CPU);
* batchml's worker loop on no-op items, one worker, then eight worker processes: one ``lease``,
  then ``complete_and_lease`` per item (the commit leases the next item, as the worker does);
* the batched loop (``--prefetch N`` in the worker): ``lease_many(N)``, then one
  ``complete_and_lease_many`` per N items (commits N, leases the next N), one worker, then eight;
* for comparison, the two-call loop (``lease``, then ``complete``, per item), one worker;
* before and after: the one-worker loop and the batched one again with the operations called as
  EVALSHA scripts (as before the Functions library, and as on Redis 6), printed beside the FCALL
  figures;
* the Kubernetes tutorial's pattern re-implemented (``BRPOPLPUSH`` + ``SETEX`` lease key, then
  ``LREM`` + ``DEL``, plus its two ``LLEN`` calls per loop), one worker, then eight;
* the peers (bench/queue_peers.py): dramatiq, SAQ, Celery, RQ and arq, each its own worker (one
  process) draining ``--peer-items`` pre-pushed no-op jobs on the same Redis, once each; a peer
  that cannot run here is reported as such.

Each batchml and tutorial loop is measured ``--repeat`` times (default 2), PING before and
between them, and the best of each is printed: on a shared machine a neighbour only ever slows
a sample down, so the best estimates what the machine can do, for the yardstick and the loops
alike. It prints items per second, the ratios, the round trips each loop paid per item (the
commands its client sent, counted by the server: ``INFO commandstats``) and the server time
they took per item (both from the best sample), each target beside its figure.

    .venv/bin/python bench/queue_throughput.py
    .venv/bin/python bench/queue_throughput.py --url redis://10.0.0.5:6379/0 --items 20000
    .venv/bin/python bench/queue_throughput.py --repeat 1   # one sample of each, faster
    .venv/bin/python bench/queue_throughput.py --peers none # without the peers
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
from queue_peers import PEERS, PeerUnavailable, measure_peer

from batchml.queue import open_queue
from batchml.queue.base import Commit, ItemSpec, WorkQueue
from batchml.queue.redis.queue import RedisQueue

TARGET_OF_PING = 0.6  # one batchml worker: at least 0.6 × the PING rate (one round trip/item)
TARGET_BATCHED_OF_PING = 1.0  # batched, a worker outruns PING (under one round trip per item)
TARGET_SERVER_US = 40.0  # Redis server time per item of complete_and_lease
TARGET_SCALE = 3.0  # eight worker processes against one worker
WORKERS = 8
BATCH = 32  # the batched loop's N (the worker's --prefetch)


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
BATCHML_COMMANDS = ("fcall", "evalsha")
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


def batchml_worker(queue_url: str, start: Any, out: Any, functions: bool = True) -> None:
    """One worker as batchml's runs: a lease, then each commit leases the next item, until
    nothing is ready; reports (items, t0, t1)."""
    queue = _open(queue_url, functions)
    worker = f"bench-{uuid.uuid4().hex[:6]}"
    start.wait()
    done, t0 = 0, time.perf_counter()
    lease = queue.lease(worker, 60)
    while lease is not None:
        lease = queue.complete_and_lease(lease.item.id, lease.token, worker=worker, ttl=60)
        done += 1
    out.put((done, t0, time.perf_counter()))


def scripts_worker(queue_url: str, start: Any, out: Any) -> None:
    """batchml_worker with the operations called as EVALSHA scripts, as before Functions (and
    as on Redis 6, or under an ACL that refuses Functions)."""
    batchml_worker(queue_url, start, out, functions=False)


def batched_scripts_worker(queue_url: str, start: Any, out: Any) -> None:
    """batched_worker with EVALSHA scripts (see scripts_worker)."""
    batched_worker(queue_url, start, out, functions=False)


def _open(queue_url: str, functions: bool) -> WorkQueue:
    queue = open_queue(queue_url)
    assert isinstance(queue, RedisQueue)
    queue._scripting.functions = functions  # False: never tries FCALL, as on Redis 6
    return queue


def batched_worker(queue_url: str, start: Any, out: Any, functions: bool = True) -> None:
    """The batched loop (the worker with ``--prefetch BATCH``): BATCH leases in one call, then
    each call commits the BATCH done and leases the next BATCH."""
    queue = _open(queue_url, functions)
    worker = f"bench-{uuid.uuid4().hex[:6]}"
    start.wait()
    done, t0 = 0, time.perf_counter()
    leases = queue.lease_many(worker, 60, BATCH)
    while leases:
        done += len(leases)
        commits = [Commit(lease.item.id, lease.token) for lease in leases]
        leases = queue.complete_and_lease_many(commits, worker=worker, ttl=60, n=BATCH)
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
    (f"batchml, {WORKERS} worker processes", fill_batchml, batchml_worker, WORKERS,
     BATCHML_COMMANDS),
    (f"batchml batched ({BATCH}), 1 worker", fill_batchml, batched_worker, 1, BATCHML_COMMANDS),
    (f"batchml batched ({BATCH}), {WORKERS} workers", fill_batchml, batched_worker, WORKERS,
     BATCHML_COMMANDS),
    ("batchml two-call loop, 1 worker", fill_batchml, two_call_worker, 1, BATCHML_COMMANDS),
    ("tutorial pattern, 1 worker", fill_tutorial, tutorial_worker, 1, TUTORIAL_COMMANDS),
    (f"tutorial pattern, {WORKERS} workers", fill_tutorial, tutorial_worker, WORKERS,
     TUTORIAL_COMMANDS),
    ("before: EVALSHA scripts, 1 worker", fill_batchml, scripts_worker, 1, BATCHML_COMMANDS),
    (f"before: EVALSHA batched ({BATCH}), 1 worker", fill_batchml, batched_scripts_worker, 1,
     BATCHML_COMMANDS),
)  # fmt: skip


Row = tuple[str, float, float, float]  # label, items/s, round trips and server µs per item


def measure(
    url: str, items: int, ping_seconds: float, repeat: int, peer_items: int, peers: list[str]
) -> None:
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
    peer_rates = measure_peers(url, peer_items, peers)
    report([best[run[0]] for run in RUNS], max(pings), max(held), len(pings), repeat, peer_rates)


def measure_peers(url: str, items: int, wanted: list[str]) -> dict[str, float | str]:
    """Jobs per second of each peer (or why it could not be measured), on database 15 of the
    same Redis (each run flushes it)."""
    base = url.rsplit("/", 1)[0]
    rates: dict[str, float | str] = {}
    for peer in PEERS:
        if peer.name.lower() not in wanted:
            continue
        try:
            rates[peer.name] = measure_peer(peer, f"{base}/15", items)
        except PeerUnavailable as exc:
            rates[peer.name] = str(exc)
    return rates


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


def report(
    rows: list[Row], ping: float, held: float, samples: int, repeat: int,
    peers: dict[str, float | str],
) -> None:  # fmt: skip
    print(f"{'PING round trips (redis-py client)':38} {ping:10,.0f} /s  (best of {samples})")
    print(f"{'PING over a held connection':38} {held:10,.0f} /s  (best of {samples})")
    print(f"(each loop below: the best of {repeat})")
    for label, rate, trips, usec in rows:
        print(
            f"{label:38} {rate:10,.0f} items/s  {trips:5.2f} round trips and "
            f"{usec:5.1f} µs of server time per item"
        )
    for name, rate in peers.items():
        how = next(p.how for p in PEERS if p.name == name)
        if isinstance(rate, float):
            print(f"{name + ' (' + how + ')':38} {rate:10,.0f} jobs/s  (once)")
        else:
            print(f"{name + ' (' + how + ')':38} not measured here: {rate}")
    one, many, b_one, b_many, two_calls, tut_one, tut_many, s_one, sb_one = (r[1] for r in rows)
    server_us = rows[0][3]
    checks = [
        ("batchml 1 worker / PING", one / ping, TARGET_OF_PING),
        ("batched 1 worker / PING", b_one / ping, TARGET_BATCHED_OF_PING),
        (f"batchml {WORKERS} workers / 1 worker", many / one, TARGET_SCALE),
        (f"batched {WORKERS} workers / 1 worker", b_many / b_one, TARGET_SCALE),
    ]
    print()
    for label, value, target in checks:
        print(f"{label:36} {value:7.3f}  (target ≥ {target})")
    print(
        f"{'server µs/item, complete_and_lease':36} {server_us:7.1f}  (target ≤ {TARGET_SERVER_US})"
    )
    print(f"{'server µs/item, batched':36} {rows[2][3]:7.1f}  (reference)")
    print("\nbefore (EVALSHA scripts, as main) -> after (FCALL), same run:")
    before_after = [
        ("server µs/item, complete_and_lease", rows[7][3], server_us, f"≤ {TARGET_SERVER_US}"),
        ("server µs/item, batched", rows[8][3], rows[2][3], "reference"),
        ("1 worker / PING", s_one / ping, one / ping, f"≥ {TARGET_OF_PING}"),
        ("batched 1 worker / PING", sb_one / ping, b_one / ping, f"≥ {TARGET_BATCHED_OF_PING}"),
    ]
    for label, before, after, target in before_after:
        print(f"  {label:34} {before:7.2f} -> {after:7.2f}  (target {target})")
    print()
    print(f"{'batchml two-call loop / PING':36} {two_calls / ping:7.2f}")
    print(f"{'batchml 1 worker / held-conn. PING':36} {one / held:7.2f}")
    print(f"{'batchml / tutorial, 1 worker':36} {one / tut_one:7.2f}")
    print(f"{'batched / tutorial, 1 worker':36} {b_one / tut_one:7.2f}")
    print(f"{f'batchml / tutorial, {WORKERS} workers':36} {many / tut_many:7.2f}")
    for name, rate in peers.items():
        if isinstance(rate, float):
            print(
                f"{'batchml 1 worker / ' + name:36} {one / rate:7.2f}  "
                f"(batched: {b_one / rate:.2f})"
            )
    missed = [label for label, value, target in checks if value < target]
    if server_us > TARGET_SERVER_US:
        missed.append("server µs/item")
    print(f"\ntargets {'met' if not missed else 'NOT met: ' + ', '.join(missed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an existing Redis (default: start one for this run)")
    parser.add_argument("--items", type=int, default=4000, help="items per worker and run")
    parser.add_argument("--ping-seconds", type=float, default=3.0, help="per repetition")
    parser.add_argument("--repeat", type=int, default=2, help="samples of each loop")
    parser.add_argument("--peer-items", type=int, default=2000, help="jobs per peer run")
    parser.add_argument(
        "--peers", default=",".join(p.name.lower() for p in PEERS),
        help="comma-separated peers to measure, or 'none'",
    )  # fmt: skip
    o = parser.parse_args()
    peers = [] if o.peers == "none" else [p.strip().lower() for p in o.peers.split(",")]
    args = (o.items, o.ping_seconds * o.repeat, o.repeat, o.peer_items, peers)
    if o.url:
        measure(o.url, *args)
        return
    with local_redis() as url:
        measure(url, *args)


if __name__ == "__main__":
    main()
