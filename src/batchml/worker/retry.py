"""Retrying a queue operation while the queue is unreachable: capped exponential backoff, jitter.

A Redis restart, a failover or a network blip makes queue calls raise QueueUnavailable for a
while. The worker calls them through :meth:`UnavailableRetry.call`, which waits ``base``,
``2·base``, … up to ``cap`` seconds between tries, each delay jittered (so N workers do not
reconnect in lockstep), and gives up after ``budget`` seconds by raising the last error.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from batchml.errors import QueueUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class UnavailableRetry:
    base: float = 0.1  # first delay (seconds)
    cap: float = 5.0  # longest delay
    budget: float = 120.0  # give up after failing for this long

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """Delay after ``failures`` failed tries: half the capped exponential, plus jitter."""
        ceiling = min(self.cap, self.base * 2.0 ** min(failures, 32))
        return ceiling / 2 + rng() * ceiling / 2

    def call(
        self,
        op: Callable[[], T],
        what: str,
        log: logging.Logger,
        interrupt: threading.Event | None = None,
        budget: float | None = None,
    ) -> T:
        """``op()``, tried again after QueueUnavailable until it answers or the budget is spent.

        A set ``interrupt`` event ends the waiting early: the last QueueUnavailable is raised.
        """
        limit = self.budget if budget is None else budget
        started = time.monotonic()
        failures = 0
        while True:
            try:
                return op()
            except QueueUnavailable as exc:
                left = limit - (time.monotonic() - started)
                if left <= 0 or (interrupt is not None and interrupt.is_set()):
                    raise
                pause = min(self.delay(failures), left)
                log.warning("%s: %s; retrying in %.2fs (%.0fs left)", what, exc, pause, left)
                if interrupt is None:
                    time.sleep(pause)
                elif interrupt.wait(pause):
                    raise
                failures += 1
