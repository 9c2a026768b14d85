"""Progress for long commands: a Rich bar on a terminal, plain log lines otherwise.

``progress_bars()`` gives counted bars (``data generate``, ``data import``, ``demo``);
``activity()`` a spinner with the elapsed time for a step that cannot count (``fraud evaluate``).
Off a terminal (a pod's log, CI) both write a few ``batchml.progress`` log lines instead.
``WorkerProgress`` is the worker's: items done and left in the queue, the rate and an ETA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from batchml import exitcodes
from batchml.errors import BatchmlError
from batchml.queue.base import State, WorkQueue
from batchml.worker.observer import WorkerObserver

log = logging.getLogger("batchml.progress")


class Bar:
    """A counter with a description; ``advance`` and ``update`` are cheap."""

    def __init__(self, progress: Progress | None, description: str, total: int) -> None:
        self._progress = progress
        self.description = description
        self.total = total
        self.completed = 0
        self._task = progress.add_task(description, total=total) if progress else None
        self._last_logged = -1.0
        self._last_time = 0.0

    def advance(self, n: int = 1) -> None:
        self.update(self.completed + n)

    def update(self, completed: int, total: int | None = None) -> None:
        self.completed = completed
        if total is not None:
            self.total = total
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed, total=self.total)
            return
        share = completed / self.total if self.total else 1.0
        now = time.monotonic()
        if share >= 1.0 or share - self._last_logged >= 0.1 or now - self._last_time > 10:
            if share != self._last_logged:
                log.info("%s: %d/%d", self.description, completed, self.total)
            self._last_logged, self._last_time = share, now


@contextmanager
def progress_bars(console: Console | None = None) -> Iterator[ProgressGroup]:
    console = console or Console(stderr=True)
    if console.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            yield ProgressGroup(progress)
    else:
        yield ProgressGroup(None)


class ProgressGroup:
    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def bar(self, description: str, total: int) -> Bar:
        return Bar(self._progress, description, total)


@contextmanager
def activity(description: str, console: Console | None = None) -> Iterator[None]:
    """A spinner and the elapsed time on a terminal; a line before and after otherwise."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    if console.is_terminal:
        columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(description, total=1)
            yield
            progress.update(task, completed=1)
        return
    log.info("%s …", description)
    yield
    log.info("%s: done in %.1fs", description, time.monotonic() - started)


class WorkerProgress(WorkerObserver):
    """A worker's view of the whole batch: items done and left in the queue, the rate (items
    committed by every worker per minute since this one started) and the time left at that
    rate. On a terminal one live line, redrawn at most every ``every`` seconds (default 1);
    elsewhere a ``batchml.progress`` log line at most every ``every`` seconds (default 30; 0:
    after every item), and one when the worker exits. Each update costs one ``counts()``."""

    def __init__(
        self,
        queue: WorkQueue,
        console: Console | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self._console = console or Console(stderr=True)
        self._tty = self._console.is_terminal
        self.every = every if every is not None else (1.0 if self._tty else 30.0)
        self._clock = clock
        self._started = clock()
        self._done_at_start: int | None = None
        self._last = float("-inf")
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_counts: dict[State, int] | None = None
        self.line = ""

    def on_start(self, worker_id: str) -> None:
        counts = self._counts()
        self._done_at_start = counts[State.DONE] if counts else 0
        self._started = self._clock()
        if self._tty:
            self._progress = Progress(
                TextColumn("{task.description}"), console=self._console, transient=True
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=None)

    def on_outcome(self, item_id: str, status: str, seconds: float) -> None:
        self._update()

    def on_idle(self) -> None:
        self._update()

    def on_exit(self, code: int) -> None:
        if code != exitcodes.UNAVAILABLE:  # unreachable: asking again would only wait a timeout
            self._update(force=True)
        if self._progress is not None:  # the live line goes; its last state stays in the log
            self._progress.stop()
            self._progress = None
            if self.line:
                log.info("%s", self.line)

    def _counts(self) -> dict[State, int] | None:
        try:
            return self.queue.counts()
        except BatchmlError:  # progress is informative: never worth failing or waiting for
            return None

    def _update(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self.every:
            return
        counts = self._counts()
        if counts is None:
            return
        self._last = now
        if force and counts == self._last_counts and self._progress is None:
            return  # off a terminal, the line of these very counts is already logged
        self._last_counts = counts
        self.line = describe(counts, self._done_at_start or 0, now - self._started)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self.line)
            self._progress.refresh()
        else:
            log.info("%s", self.line)


def describe(counts: dict[State, int], done_at_start: int, elapsed: float) -> str:
    """``progress: 40 done, 52 left in the queue (3 blocked), 12.0 items/min, ETA 4m20s``."""
    done = counts[State.DONE]
    left = counts[State.WAITING] + counts[State.READY] + counts[State.LEASED]
    blocked = f" ({counts[State.BLOCKED]} blocked)" if counts[State.BLOCKED] else ""
    dead = f", {counts[State.DEAD]} dead" if counts[State.DEAD] else ""
    rate = 60.0 * max(done - done_at_start, 0) / elapsed if elapsed > 0 else 0.0
    eta = "-" if not left else (_duration(60.0 * left / rate) if rate > 0 else "unknown")
    return (
        f"progress: {done} done, {left} left in the queue{blocked}{dead}, "
        f"{rate:.1f} items/min, ETA {eta}"
    )


def _duration(seconds: float) -> str:
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
