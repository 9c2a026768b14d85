"""What every command shares: the settings from the global options, and the console."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from rich.console import Console

from batchml.queue import WorkQueue, open_queue
from batchml.settings import Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class State:
    settings: Settings


def settings(ctx: typer.Context) -> Settings:
    """The settings the global options (flags, then BATCHML_* variables, then defaults) gave."""
    obj = ctx.find_root().obj
    assert isinstance(obj, State), "the main callback sets the settings"
    return obj.settings


def queue(ctx: typer.Context, timeout: float | None = None, *, create: bool = True) -> WorkQueue:
    """The queue the settings name; ``timeout`` bounds connecting to and waiting for Redis.
    With ``create``, the default queue's folder (the storage root) is made if missing."""
    s = settings(ctx)
    if create and s.queue_url is None:
        s.root.mkdir(parents=True, exist_ok=True)
    return open_queue(
        s.resolved_queue_url, s.queue_options(), s.connect_options(timeout), create=create
    )
