"""What every command shares: the settings from the global options, and the console."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from rich.console import Console

from batchml.errors import ConfigError
from batchml.queue import WorkQueue, open_queue
from batchml.settings import Settings

# highlight=False: Rich would colour the digits of a date (2018-04-01) one by one
console = Console(soft_wrap=True, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)


@dataclass
class State:
    settings: Settings
    root_given: bool = True  # --root or BATCHML_ROOT was set (the demo has its own default)


def settings(ctx: typer.Context) -> Settings:
    """The settings the global options (flags, then BATCHML_* variables, then defaults) gave."""
    obj = ctx.find_root().obj
    assert isinstance(obj, State), "the main callback sets the settings"
    return obj.settings


def root_given(ctx: typer.Context) -> bool:
    """Whether --root or BATCHML_ROOT named the storage root (else it is the default)."""
    obj = ctx.find_root().obj
    assert isinstance(obj, State), "the main callback sets the settings"
    return obj.root_given


def existing_root(ctx: typer.Context) -> Settings:
    """The settings, once their storage root is known to exist (commands that read it: a typo
    or a volume that is not mounted must not read as an empty root)."""
    s = settings(ctx)
    if not s.root.is_dir():
        what = "is not a folder" if s.root.exists() else "does not exist"
        raise ConfigError(
            f"storage root {s.root} {what}: check --root / BATCHML_ROOT or the volume mount"
        )
    return s


def queue(ctx: typer.Context, timeout: float | None = None, *, create: bool = True) -> WorkQueue:
    """The queue the settings name; ``timeout`` bounds connecting to and waiting for Redis.

    With ``create=False`` (the commands that only read or administer a queue), a queue that
    does not exist is refused instead of created; so is a storage root that does not exist,
    when the queue is the default SQLite file under it. With ``create``, the default queue's
    folder (the storage root) is made if missing."""
    s = settings(ctx)
    if not create and s.queue_url is None:
        existing_root(ctx)
    if create and s.queue_url is None:
        s.root.mkdir(parents=True, exist_ok=True)
    return open_queue(
        s.resolved_queue_url, s.queue_options(), s.connect_options(timeout), create=create
    )
