"""Faults of the links between worker hosts and Redis: black holes, partitions, latency with
dropped connections, and Redis itself black-holed. Each worker runs in a host (a network
namespace) of its own and reaches Redis across a veth link (tests/netfaults/harness.py).

Every case checks the same invariants (tests/netfaults/checks.py): each item committed once,
each published output the one of its committed attempt (no fenced attempt publishes), nothing
left staged, every worker exiting with its documented code in bounded time; and prints its
figures (items, faults, duplicates executed vs published, time to recover).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.queue import open_queue
from batchml.queue.base import State
from tests.netfaults import checks
from tests.netfaults.harness import REDIS_PORT, Net
from tests.netfaults.netns import has_nft, nft

pytestmark = [pytest.mark.slow, pytest.mark.redis]

#: the seconds a Redis call may block before it fails (ConnectOptions.socket_timeout)
SOCKET_TIMEOUT = 10.0


def _fast(lease_ttl: float, queue_retry: float) -> list[str]:
    return ["--lease-ttl", str(lease_ttl), "--queue-retry", str(queue_retry), "--poll", "0.1"]


@pytest.mark.timeout(90)
def test_worker_black_holed_past_its_lease_publishes_nothing(net: Net, tmp_path: Path) -> None:
    """Given worker A mid-task (a task that never checks its lease), when every packet between
    A's host and Redis is dropped for well over its 2 s lease, then worker B takes the item over
    and commits it; A, healed, has its commit refused (a stale token) and publishes nothing;
    both exit 0."""
    control = net.start_redis()
    a_host, b_host = net.add_host(), net.add_host()
    queue = open_queue(f"{control}?name=q")
    root, attempts = tmp_path / "root", tmp_path / "attempts"
    ids = checks.push_items(queue, attempts, 1, seconds=3, check=False)
    a_url = a_host.redis_url if has_nft() else a_host.proxied_url()  # without nft: the proxy
    a = a_host.spawn_worker(
        checks.settings(root, f"{a_url}?name=q"), tmp_path / "a.log", _fast(2, 60)
    )
    checks.wait_for(lambda: any(attempts.iterdir()), 60, "worker A to start the item")
    how = a_host.blackhole()
    holed = time.monotonic()
    b = b_host.spawn_worker(
        checks.settings(root, f"{b_host.redis_url}?name=q"), tmp_path / "b.log", _fast(2, 60)
    )
    checks.wait_for(lambda: queue.get("i00").state == State.DONE, 60, "worker B to commit")
    time.sleep(max(0.0, 6 - (time.monotonic() - holed)))  # A's 3 s task is over: it is committing
    a_host.heal()
    assert checks.exit_codes([a, b], 60) == [exitcodes.OK, exitcodes.OK]

    figures = checks.assert_exactly_once(queue, root, attempts, ids)
    item = queue.get("i00")
    assert item.token == 2 and figures.executed == 2 and figures.published == 1
    outcomes = [(h.token, h.outcome) for h in queue.history() if h.item_id == "i00"]
    assert outcomes == [(1, "expired"), (2, "done")]
    log = (tmp_path / "a.log").read_text()
    assert "abandoned i00" in log, log[-3000:]
    print(f"\ncase 1 ({how} black hole {time.monotonic() - holed:.1f}s): {figures}")


@pytest.mark.timeout(120)
def test_half_the_workers_partitioned_mid_run_lose_and_duplicate_nothing(
    net: Net, tmp_path: Path
) -> None:
    """Given 4 workers on 4 hosts, when the links of two of them go down for 10 s in the middle
    of the run (no carrier: nothing is reset, packets vanish), then their items expire and are
    taken over, every item is committed once with the output of its committing attempt, and all
    four exit 0 once healed."""
    control = net.start_redis()
    hosts = [net.add_host() for _ in range(4)]
    queue = open_queue(f"{control}?name=q")
    root, attempts = tmp_path / "root", tmp_path / "attempts"
    ids = checks.push_items(queue, attempts, 16, seconds=1.0)
    procs = [
        h.spawn_worker(checks.settings(root, f"{h.redis_url}?name=q"), tmp_path / f"w{h.index}.log",
                       _fast(2, 40))
        for h in hosts
    ]  # fmt: skip
    checks.wait_for(lambda: queue.counts()[State.DONE] >= 2, 60, "two items committed")
    for host in hosts[:2]:
        host.partition()
    cut = time.monotonic()
    time.sleep(10)
    for host in hosts[:2]:
        host.heal()
    assert checks.exit_codes(procs, 2 + 40 + SOCKET_TIMEOUT + 30) == [exitcodes.OK] * 4
    recovered = time.monotonic() - cut
    figures = checks.assert_exactly_once(queue, root, attempts, ids)
    expired = [h for h in queue.history(10_000) if h.outcome == "expired"]
    assert expired, "no partitioned worker held a lease: the partition tested nothing"
    print(f"\ncase 2 (2 of 4 links down 10 s; {len(expired)} leases expired; drained "
          f"{recovered:.1f}s after the cut): {figures}, dup executed "
          f"{figures.duplicates_executed}")  # fmt: skip


@pytest.mark.timeout(120)
def test_latency_and_dropped_connections_on_every_link(net: Net, tmp_path: Path) -> None:
    """Given 3 workers whose every Redis round trip is delayed 200 ms ± 100 ms (100 ± 50 each
    way) by their link's proxy, when every connection is also reset every 4 s for the whole
    run, then every item is committed once and every worker exits 0."""
    control = net.start_redis()
    hosts = [net.add_host() for _ in range(3)]
    queue = open_queue(f"{control}?name=q")
    root, attempts = tmp_path / "root", tmp_path / "attempts"
    ids = checks.push_items(queue, attempts, 9, seconds=0.5)
    urls = [h.proxied_url() for h in hosts]
    for host in hosts:
        assert host.proxy is not None
        host.proxy.delay(0.1, 0.05)  # each way: a round trip of 200 ms ± 100 ms
    procs = [
        h.spawn_worker(checks.settings(root, f"{u}?name=q"), tmp_path / f"w{h.index}.log",
                       _fast(6, 60))
        for h, u in zip(hosts, urls, strict=True)
    ]  # fmt: skip
    # a worker opening its queue does not retry (one reset there exits 69: see docs/faults.md),
    # so the resets start once all three have started working
    checks.wait_for(lambda: len(queue.workers()) == 3, 60, "the three workers to start")
    drops, started = 0, time.monotonic()
    next_drop = started + 4.0
    while any(p.poll() is None for p in procs) and time.monotonic() - started < 90:
        time.sleep(0.05)  # a drop round every 4 s; the loop ends as soon as the workers exit
        if time.monotonic() < next_drop:
            continue
        for host in hosts:
            assert host.proxy is not None
            host.proxy.drop()
        drops += 1
        next_drop += 4.0
    assert checks.exit_codes(procs, 30) == [exitcodes.OK] * 3
    figures = checks.assert_exactly_once(queue, root, attempts, ids)
    reset = sum(h.proxy.stats.dropped for h in hosts if h.proxy)
    assert reset > 0, "no connection was ever reset"
    print(
        f"\ncase 3 (200±100 ms round trips, {drops} drop rounds, {reset} connections reset, "
        f"{time.monotonic() - started:.1f}s): {figures}"
    )


def _black_hole_redis(net: Net) -> str:
    """Drop every packet to and from Redis on the hub's bridge (the test's control path, over
    the hub's loopback, stays up); how (nft, or each host's proxy)."""
    if has_nft():
        nft(net.hub, f"""table inet batchml_fault {{
  chain in {{ type filter hook input priority 0; iifname "br0" tcp dport {REDIS_PORT} drop; }}
  chain out {{ type filter hook output priority 0; oifname "br0" tcp sport {REDIS_PORT} drop; }}
}}
""")  # fmt: skip
        return "nft"
    for host in net.hosts:
        assert host.proxy is not None
        host.proxy.blackhole()
    return "proxy"


@pytest.mark.timeout(120)
def test_redis_black_holed_past_queue_retry_workers_exit_69_and_a_rerun_finishes(
    net: Net, tmp_path: Path
) -> None:
    """Given 2 workers mid-task, when Redis stops answering (every packet dropped) for longer
    than their 3 s queue_retry, then both exit 69 within lease_ttl + queue_retry + one socket
    timeout, having published nothing; healed, a rerun commits every item once and exits 0."""
    control = net.start_redis()
    hosts = [net.add_host() for _ in range(2)]
    queue = open_queue(f"{control}?name=q")
    root, attempts = tmp_path / "root", tmp_path / "attempts"
    ids = checks.push_items(queue, attempts, 4, seconds=2.0)
    urls = [h.redis_url if has_nft() else h.proxied_url() for h in hosts]
    procs = [
        h.spawn_worker(checks.settings(root, f"{u}?name=q"), tmp_path / f"w{h.index}.log",
                       _fast(2, 3))
        for h, u in zip(hosts, urls, strict=True)
    ]  # fmt: skip
    checks.wait_for(lambda: len(list(attempts.iterdir())) >= 2, 60, "both workers in a task")
    how = _black_hole_redis(net)
    holed = time.monotonic()
    bound = 2 + 3 + 2 * SOCKET_TIMEOUT + 10  # a commit and a lease may each block a timeout
    assert checks.exit_codes(procs, bound) == [exitcodes.UNAVAILABLE] * 2
    stopped = time.monotonic() - holed
    assert not list((root / "runs/default/out").glob("*.txt")) or all(
        queue.get(p.stem).state == State.DONE for p in (root / "runs/default/out").glob("*.txt")
    ), "an output was published for an item that is not done"
    if how == "nft":
        nft(net.hub, "delete table inet batchml_fault\n")
    for host in hosts:
        host.heal()
    rerun = [
        h.spawn_worker(checks.settings(root, f"{u}?name=q"), tmp_path / f"r{h.index}.log",
                       _fast(2, 30))
        for h, u in zip(hosts, urls, strict=True)
    ]  # fmt: skip
    assert checks.exit_codes(rerun, 60) == [exitcodes.OK] * 2
    figures = checks.assert_exactly_once(queue, root, attempts, ids)
    print(
        f"\ncase 4 ({how} black hole of Redis; workers exited 69 after {stopped:.1f}s): {figures}"
    )
