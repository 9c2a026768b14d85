"""Progress for long commands: a Rich bar on a terminal, plain log lines otherwise.

``progress_bars()`` gives counted bars (``data generate``, ``data import``, ``demo``);
``activity()`` a spinner with the elapsed time for a step that cannot count (``fraud evaluate``).
Off a terminal (a pod's log, CI) both write a few ``batchml.observe.progress`` log lines instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

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
