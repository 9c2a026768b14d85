"""When the chaos tests send their next SIGKILL."""

from __future__ import annotations

import random
import time


class KillSchedule:
    """A kill is due every ``seconds`` (one chance, then the clock starts again) or once
    ``items`` more items have been committed, whichever comes first. On a slow machine the clock
    drives it; on a fast idle one, where the whole run takes a few seconds, progress does - so
    both see several kills, and neither sees a kill the moment a worker becomes killable."""

    def __init__(
        self,
        rng: random.Random,
        seconds: tuple[float, float],
        items: tuple[int, int],
        first_after: int,
    ) -> None:
        self._rng, self._seconds, self._items = rng, seconds, items
        self._kill_at = time.monotonic() + rng.uniform(*seconds)
        self._done_at = first_after

    def due(self, done: int) -> bool:
        """Whether to kill now, given ``done`` items committed so far."""
        now = time.monotonic()
        if now >= self._kill_at:
            self._kill_at = now + self._rng.uniform(*self._seconds)
            return True
        return done >= self._done_at

    def killed(self, done: int) -> None:
        """A kill landed with ``done`` items committed: both triggers start again."""
        self._done_at = done + self._rng.randint(*self._items)
        self._kill_at = time.monotonic() + self._rng.uniform(*self._seconds)
