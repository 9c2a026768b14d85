"""The peer task queues of bench/queue_throughput.py: dramatiq, SAQ, Celery, RQ and arq.

Each is measured the same way: N no-op jobs pushed first with the library's own client, then
its own worker (its default settings, one process, as its documentation starts one) started in
a process of its own, drained, and timed from its first job taken to its last job done - what
is left is read from the library's own Redis keys every few milliseconds (its waiting jobs plus
those taken but not yet done). Every library comes from the ``bench`` extra; one that is not
installed, or fails here, is reported as such (``PeerUnavailable``), never guessed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis


class PeerUnavailable(Exception):
    """A peer cannot be measured here (not installed, or failed); the message says why."""


def noop(*args: Any, **kwargs: Any) -> None:
    """The job every peer runs."""
    return None


async def anoop(ctx: Any, *args: Any, **kwargs: Any) -> None:
    return None


@dataclass(frozen=True)
class Peer:
    name: str
    how: str  # the worker, as started
    fill: Callable[[str, int], None]
    remaining: Callable[[redis.Redis[bytes]], int]
    work: Callable[[str], None]  # runs in its own process until terminated (or drained)


# -- RQ --------------------------------------------------------------------------------------


def _rq_fill(url: str, n: int) -> None:
    from rq import Queue

    queue = Queue("bench", connection=redis.Redis.from_url(url))
    for first in range(0, n, 1000):
        queue.enqueue_many(
            [Queue.prepare_data(noop, result_ttl=0) for _ in range(first, min(first + 1000, n))]
        )


def _rq_remaining(client: redis.Redis[bytes]) -> int:
    from rq import Queue
    from rq.registry import StartedJobRegistry

    queue = Queue("bench", connection=client)
    return int(queue.count) + int(StartedJobRegistry(queue=queue).count)


def _rq_work(url: str) -> None:
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(url)
    SimpleWorker([Queue("bench", connection=conn)], connection=conn).work(
        burst=True, logging_level="ERROR"
    )


# -- dramatiq --------------------------------------------------------------------------------


def _dramatiq_broker(url: str) -> Any:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    dramatiq.actor(noop, actor_name="noop", queue_name="bench", max_retries=0)
    return broker


def _dramatiq_fill(url: str, n: int) -> None:
    broker = _dramatiq_broker(url)
    actor = broker.get_actor("noop")
    for _ in range(n):
        actor.send()


def _dramatiq_remaining(client: redis.Redis[bytes]) -> int:
    return int(client.hlen("dramatiq:bench.msgs"))


def _dramatiq_work(url: str) -> None:
    from dramatiq import Worker

    broker = _dramatiq_broker(url)
    worker = Worker(broker, worker_threads=1)
    worker.start()
    while True:
        time.sleep(1)


# -- arq -------------------------------------------------------------------------------------


def _arq_fill(url: str, n: int) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    async def fill() -> None:
        pool = await create_pool(RedisSettings.from_dsn(url))
        for _ in range(n):
            await pool.enqueue_job("anoop")
        await pool.aclose()

    asyncio.run(fill())


def _arq_remaining(client: redis.Redis[bytes]) -> int:
    return int(client.zcard("arq:queue"))


def _arq_work(url: str) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    worker = Worker(
        functions=[func(anoop, name="anoop")], redis_settings=RedisSettings.from_dsn(url),
        burst=True, handle_signals=False, keep_result=0,
    )  # fmt: skip
    worker.run()


# -- SAQ -------------------------------------------------------------------------------------


def _saq_fill(url: str, n: int) -> None:
    from saq import Queue

    async def fill() -> None:
        queue = Queue.from_url(url, name="bench")
        for _ in range(n):
            await queue.enqueue("anoop")
        await queue.disconnect()

    asyncio.run(fill())


def _saq_remaining(client: redis.Redis[bytes]) -> int:
    return int(client.zcard("saq:bench:incomplete"))


def _saq_work(url: str) -> None:
    from saq import Queue, Worker

    async def work() -> None:
        queue = Queue.from_url(url, name="bench")
        await Worker(queue, functions=[("anoop", anoop)], burst=True, dequeue_timeout=1).start()

    asyncio.run(work())


# -- Celery ----------------------------------------------------------------------------------


def _celery_app(url: str) -> Any:
    from celery import Celery

    app = Celery("bench", broker=url)
    app.conf.task_ignore_result = True
    app.conf.worker_hijack_root_logger = False
    app.task(noop, name="noop")
    return app


def _celery_fill(url: str, n: int) -> None:
    app = _celery_app(url)
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            app.send_task("noop", producer=producer)


def _celery_remaining(client: redis.Redis[bytes]) -> int:
    return int(client.llen("celery")) + int(client.hlen("unacked"))


def _celery_work(url: str) -> None:
    logging.disable(logging.WARNING)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - its banner; this process is ended
    _celery_app(url).worker_main(
        ["worker", "--pool=solo", "--loglevel=ERROR", "--without-mingle", "--without-gossip",
         "--without-heartbeat"]
    )  # fmt: skip


PEERS = (
    Peer("dramatiq", "Worker, 1 thread", _dramatiq_fill, _dramatiq_remaining, _dramatiq_work),
    Peer(
        "SAQ",
        "Worker, burst (concurrency 10, dequeue_timeout 1)",
        _saq_fill,
        _saq_remaining,
        _saq_work,
    ),
    Peer("Celery", "worker --pool=solo", _celery_fill, _celery_remaining, _celery_work),
    Peer("RQ", "SimpleWorker, burst", _rq_fill, _rq_remaining, _rq_work),
    Peer("arq", "Worker, burst (max_jobs 10)", _arq_fill, _arq_remaining, _arq_work),
)


def measure_peer(peer: Peer, url: str, items: int, timeout: float = 300.0) -> float:
    """Items per second of ``peer``'s own worker draining ``items`` pre-pushed no-op jobs."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        peer.fill(url, items)
    except ImportError as exc:
        raise PeerUnavailable(f"not installed ({exc}); pip install -e '.[bench]'") from None
    except Exception as exc:
        raise PeerUnavailable(f"could not push jobs: {type(exc).__name__}: {exc}") from None
    if peer.remaining(client) != items:
        raise PeerUnavailable(f"pushed {items} jobs but {peer.remaining(client)} are queued")
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=peer.work, args=(url,), daemon=True)
    proc.start()
    try:
        end = time.monotonic() + timeout
        while (left := peer.remaining(client)) == items:
            if not proc.is_alive() or time.monotonic() > end:
                raise PeerUnavailable(f"its worker took no job (exit code {proc.exitcode})")
            time.sleep(0.002)
        t0 = time.perf_counter()
        while left > 0:
            if time.monotonic() > end:
                raise PeerUnavailable(f"{left} jobs still left after {timeout:.0f}s")
            if not proc.is_alive() and (left := peer.remaining(client)) > 0:
                raise PeerUnavailable(f"its worker exited ({proc.exitcode}) with {left} left")
            time.sleep(0.002)
            left = peer.remaining(client)
        return items / (time.perf_counter() - t0)
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(timeout=10)
        client.flushdb()
