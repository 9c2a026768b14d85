"""Retrying an unreachable queue: capped exponential delays with jitter, a budget, a stop."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from batchml.errors import QueueUnavailable
from batchml.worker.retry import UnavailableRetry

log = logging.getLogger("test")


def test_delays_grow_exponentially_up_to_the_cap_with_jitter() -> None:
    backoff = UnavailableRetry(base=0.1, cap=2.0)
    assert [backoff.delay(n, rng=lambda: 0.0) for n in range(6)] == [
        0.05, 0.1, 0.2, 0.4, 0.8, 1.0,
    ]  # fmt: skip
    assert [backoff.delay(n, rng=lambda: 1.0) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert backoff.delay(10_000) <= 2.0


def test_call_retries_until_the_queue_answers() -> None:
    answers = iter([QueueUnavailable("down"), QueueUnavailable("down"), "leased"])

    def op() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert UnavailableRetry(base=0.01).call(op, "lease", log) == "leased"


def test_call_gives_up_after_the_budget_with_the_last_error() -> None:
    def op() -> None:
        raise QueueUnavailable("still down")

    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match="still down"):
        UnavailableRetry(base=0.01, cap=0.05, budget=0.3).call(op, "lease", log)
    assert 0.3 <= time.monotonic() - started < 1.0


def test_call_stops_waiting_when_interrupted() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()

    def op() -> None:
        raise QueueUnavailable("down")

    started = time.monotonic()
    with pytest.raises(QueueUnavailable):
        UnavailableRetry(base=5.0, cap=5.0, budget=60).call(op, "lease", log, interrupt=stop)
    assert time.monotonic() - started < 1.0


def test_other_errors_are_not_retried() -> None:
    calls = []

    def op() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        UnavailableRetry(base=0.01).call(op, "lease", log)
    assert calls == [1]
