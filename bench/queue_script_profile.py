"""Profile: where one ``complete_and_lease`` spends its Redis server time.

Runs the real script, instrumented: ``TIME`` read at the start, after the prelude (its
functions and the KEYS binding), after the arguments, after the commit, after the lease and
after the write-back (``flush``), on a queue of no-op items drained one item per call. Prints
the median and mean of each phase in µs (each ``TIME`` read itself costs about a microsecond and
is counted in the phase that follows it), then the commands the script ran per item, with their
own time (``INFO commandstats``): what is left of the total is Lua itself (closures, MessagePack,
string formatting) and the cost of calling Redis from Lua. The instrumented run is the
EVALSHA form (the script with the prelude before it); last, the same loop uninstrumented,
server time per item before (EVALSHA scripts) and after (the FCALL library), side by side.

    .venv/bin/python bench/queue_script_profile.py                  # a Redis of its own
    .venv/bin/python bench/queue_script_profile.py --url redis://127.0.0.1:6379/0 --items 5000
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from typing import Any

import redis
from queue_throughput import local_redis

from batchml.queue import open_queue
from batchml.queue.base import ItemSpec
from batchml.queue.redis.queue import RedisQueue, _item
from batchml.queue.redis.scripts import script_source

PHASES = ("prelude and KEYS", "arguments, clock", "commit", "lease", "write-back")
_TIME = (
    "local function _t() local t = redis.call('TIME') "
    "return tonumber(t[1]) * 1000000 + tonumber(t[2]) end\nlocal _T = {_t()}\n"
)


def instrumented() -> str:
    """complete_and_lease's source with the phase marks (each replace must match once)."""
    source = _TIME + script_source("complete_and_lease")[0]
    marks = (
        ("local function main()\n", "local function main()\n_T[#_T + 1] = _t()\n"),
        ("local refused = complete_item(", "_T[#_T + 1] = _t()\nlocal refused = complete_item("),
        (
            "return lease_next(now, worker, ttl, request, limit)",
            "_T[#_T + 1] = _t()\nlocal leased = lease_next(now, worker, ttl, request, limit)\n"
            "_T[#_T + 1] = _t()\nreturn leased",
        ),
        (
            "local reply = main()\nflush()\nreturn reply\n",
            "local reply = main()\nflush()\n_T[#_T + 1] = _t()\n"
            "if reply[1] ~= 'ok' then return reply end\nlocal out = {reply[1], reply[2]}\n"
            "for i = 2, #_T do out[#out + 1] = tostring(_T[i] - _T[i - 1]) end\nreturn out\n",
        ),
    )
    for old, new in marks:
        assert source.count(old) == 1, f"the script changed: {old!r}"
        source = source.replace(old, new)
    return source


def profile(url: str, items: int) -> None:
    admin: redis.Redis[bytes] = redis.Redis.from_url(url)
    queue_url = f"{url}?name=profile-{uuid.uuid4().hex[:8]}"
    queue = open_queue(queue_url)
    assert isinstance(queue, RedisQueue)
    queue.push([ItemSpec(payload={"task": "noop", "n": i}, id=f"n{i}") for i in range(items)])
    sha = admin.script_load(instrumented())
    keys = queue.keys.for_script("complete_and_lease")
    lease = queue.lease("profile", 60)
    assert lease is not None
    item_id, token = lease.item.id, lease.token
    phases: list[list[int]] = []
    admin.config_resetstat()
    while True:
        reply: Any = admin.evalsha(
            sha, len(keys), *keys, "", item_id, token, "", 10_000, "profile", 60_000, "r", 0
        )
        if reply[0] != b"ok":
            break
        phases.append([int(x) for x in reply[2:]])
        nxt = _item(reply[1].decode())
        item_id, token = nxt.id, nxt.token
    stats: Any = admin.info("commandstats")
    queue.purge()
    done = len(phases)
    print(f"complete_and_lease, {done} items, one per call (µs per call):")
    for i, label in enumerate(PHASES):
        median, mean = (
            statistics.median(p[i] for p in phases),
            statistics.mean(p[i] for p in phases),
        )
        print(f"  {label:18} median {median:6.1f}  mean {mean:6.1f}")
    total = sum(statistics.mean(p[i] for p in phases) for i in range(len(PHASES)))
    print(f"  {'total':18}                mean {total:6.1f}")
    print("commands it ran, per item:")
    for name, s in sorted(stats.items(), key=lambda kv: -float(kv[1]["usec"])):
        if name.startswith("cmdstat_") and name not in ("cmdstat_config|resetstat",):
            calls, usec = int(s["calls"]) / done, float(s["usec"]) / done
            print(f"  {name[8:]:18} {calls:5.2f} calls  {usec:6.1f} µs")


def plain(url: str, items: int, functions: bool) -> float:
    """Server µs per item of complete_and_lease, uninstrumented (``INFO commandstats``), called
    as a function of the library (FCALL) or as a script (EVALSHA)."""
    admin: redis.Redis[str] = redis.Redis.from_url(url, decode_responses=True)
    queue = open_queue(f"{url}?name=plain-{uuid.uuid4().hex[:8]}")
    assert isinstance(queue, RedisQueue)
    queue._scripting.functions = functions  # False: never tries FCALL, as on Redis 6
    queue.push([ItemSpec(payload={"task": "noop", "n": i}, id=f"n{i}") for i in range(items)])
    lease = queue.lease("plain", 60)
    admin.config_resetstat()
    done = 0
    while lease is not None:
        lease = queue.complete_and_lease(lease.item.id, lease.token, worker="plain", ttl=60)
        done += 1
    stats: Any = admin.info("commandstats")
    queue.purge()
    usec = sum(float(stats.get(f"cmdstat_{c}", {"usec": 0})["usec"]) for c in ("fcall", "evalsha"))
    return usec / done


def compare(url: str, items: int) -> None:
    """Before (EVALSHA scripts) and after (FCALL), alternated, the best of three each."""
    scripts, functions = [], []
    for _ in range(3):
        scripts.append(plain(url, items, functions=False))
        functions.append(plain(url, items, functions=True))
    print("complete_and_lease uninstrumented, server µs per item (best of 3, alternated):")
    print(f"  EVALSHA scripts (before)  {min(scripts):6.1f}")
    print(f"  FCALL library (after)     {min(functions):6.1f}  (target ≤ 40)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an existing Redis (default: start one for this run)")
    parser.add_argument("--items", type=int, default=3000)
    options = parser.parse_args()
    if options.url:
        profile(options.url, options.items)
        compare(options.url, options.items)
        return
    with local_redis() as url:
        profile(url, options.items)
        compare(url, options.items)


if __name__ == "__main__":
    main()
