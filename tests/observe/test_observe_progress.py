"""Progress: a Rich bar on a terminal, a few log lines elsewhere (pods, CI, pipes)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from rich.console import Console

from batchml.observe.progress import activity, progress_bars


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Messages of ``batchml.observe.progress`` (attached to it: ``batchml`` does not propagate)."""
    handler = Lines()
    logger = logging.getLogger("batchml.progress")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_off_a_terminal_a_bar_logs_about_every_tenth(logged: list[str]) -> None:
    with progress_bars(Console(file=io.StringIO(), force_terminal=False)) as bars:
        bar = bars.bar("writing daily datasets", 100)
        for _ in range(100):
            bar.advance()
    lines = logged
    assert lines[-1] == "writing daily datasets: 100/100"
    assert 10 <= len(lines) <= 11


def test_on_a_terminal_the_bar_and_spinner_are_drawn(logged: list[str]) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress_bars(console) as bars:
        bars.bar("items done (2 workers)", 4).update(4)
    with activity("evaluating run 'default'", console):
        pass
    text = out.getvalue()
    assert "items done (2 workers)" in text and "4/4" in text
    assert "evaluating run 'default'" in text
    assert logged == []  # nothing logged when drawn


def test_off_a_terminal_activity_logs_start_and_end(logged: list[str]) -> None:
    with activity("evaluating run 'x'", Console(file=io.StringIO(), force_terminal=False)):
        pass
    lines = logged
    assert lines[0] == "evaluating run 'x' …" and lines[1].startswith("evaluating run 'x': done in")
