"""``batchml``: the command line. Every option also reads a ``BATCHML_*`` environment variable."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from batchml import __version__, exitcodes
from batchml.cli import common, data, helptext, queue_cmd, report_cmd, worker_cmd
from batchml.errors import BatchmlError, ConfigError, DataLoss, QueueCorrupt, QueueUnavailable
from batchml.observe import logs
from batchml.publish_modes import StorageMode
from batchml.settings import DEFAULT_ROOT, DEFAULT_RUN, Settings
from batchml.tasks.registry import parse_modules

helptext.install()
app = typer.Typer(
    name="batchml",
    help="Fault-tolerant batch ML: a work queue, workers that may die at any moment, "
    "and results exactly as if nothing went wrong.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain Click help: metavars TEXT / INTEGER / PATH (never <bool> or <list[Path]>), no markup
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data.app, name="data")
app.add_typer(queue_cmd.app, name="queue")
app.command("worker")(worker_cmd.worker)
app.command("report")(report_cmd.report)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"batchml {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    root: Annotated[
        Path, typer.Option(envvar="BATCHML_ROOT", help="Storage root (local folder or NFS mount).")
    ] = Path(DEFAULT_ROOT),
    queue: Annotated[
        str | None,
        typer.Option(
            envvar="BATCHML_QUEUE",
            help="Queue URL: sqlite:///path/queue.db or redis://host:port/db. "
            "Default: sqlite:///<root>/queue.db.",
        ),
    ] = None,
    run: Annotated[
        str, typer.Option(envvar="BATCHML_RUN", help="Run name: a lineage and its outputs.")
    ] = DEFAULT_RUN,
    max_attempts: Annotated[
        int,
        typer.Option(envvar="BATCHML_MAX_ATTEMPTS", help="Attempts before an item is dead."),
    ] = 3,
    redis_password: Annotated[
        str | None,
        typer.Option(
            envvar="BATCHML_REDIS_PASSWORD",
            show_default=False,
            help="Password for a redis:// queue (overrides one in the URL); best set from a "
            "Secret through the environment variable.",
        ),
    ] = None,
    redis_ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="BATCHML_REDIS_CA_FILE",
            help="PEM file of the CA that signed the server's certificate (rediss://).",
        ),
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            envvar="BATCHML_TASKS",
            show_default=False,
            help="Module whose @batchml.task functions workers may run (repeatable, or "
            "comma-separated). Built-ins and 'batchml.tasks' entry points are always allowed; "
            "nothing else is.",
        ),
    ] = None,
    storage_mode: Annotated[
        StorageMode,
        typer.Option(
            envvar="BATCHML_STORAGE_MODE",
            help="How outputs are published: rename (local disk, NFS), or write-once (a Cloud "
            "Storage FUSE bucket: no renames, every output created once).",
        ),
    ] = StorageMode.RENAME,
    log_level: Annotated[
        logs.LogLevel,
        typer.Option(envvar="BATCHML_LOG_LEVEL", case_sensitive=False, help="Log level."),
    ] = logs.LogLevel.INFO,
    log_format: Annotated[
        logs.LogFormat,
        typer.Option(envvar="BATCHML_LOG_FORMAT", help="text, or json: one object per line."),
    ] = logs.LogFormat.TEXT,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    logs.configure(log_level, log_format)
    settings = Settings(
        root=root, queue_url=queue, run=run, max_attempts=max_attempts,
        redis_password=redis_password, redis_ca_file=redis_ca_file, tasks=parse_modules(tasks),
        storage_mode=storage_mode,
    )  # fmt: skip
    ctx.obj = common.State(settings, root_given=_given(ctx, "root"))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option came from the command line or its environment variable."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _register_late_commands() -> None:
    from batchml.cli import dashboard_cmd, demo_cmd, fraud_cmd, lineage_cmd

    app.command("demo")(demo_cmd.demo)
    app.command("dashboard")(dashboard_cmd.dashboard)
    app.add_typer(fraud_cmd.app, name="fraud")
    app.add_typer(lineage_cmd.app, name="lineage")


_register_late_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every expected failure prints one line and exits with a documented code.

    The codes are :mod:`batchml.exitcodes` (README, "Exit codes"): usage errors 2, a
    BatchmlError by its kind (78, 69, 65, else 1), Ctrl-C 130, and anything unexpected 70 with
    one line (``--log-level DEBUG`` adds the traceback), never a traceback that exits 1.
    """
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """The CLI's exit code for these arguments (the lines it prints are on stdout/stderr)."""
    try:
        code = app(args=argv, prog_name="batchml", standalone_mode=False)
    except ConfigError as exc:
        return _fail("configuration error", exc, exitcodes.CONFIG)
    except QueueUnavailable as exc:
        return _fail("queue unavailable", exc, exitcodes.UNAVAILABLE)
    except (QueueCorrupt, DataLoss) as exc:
        return _fail("queue data lost", exc, exitcodes.DATA_LOSS)
    except BatchmlError as exc:
        return _fail("error", exc, exitcodes.DEAD_ITEMS)
    except (KeyboardInterrupt, typer.Abort):
        common.err_console.print("[red]interrupted[/red]", highlight=False)
        return exitcodes.INTERRUPTED
    except Exception as exc:  # the one place that turns a bug into exit 70, not a traceback
        usage = _usage_error(exc)
        if usage is not None:
            return usage
        debug = logging.getLogger("batchml").isEnabledFor(logging.DEBUG)
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run with --log-level DEBUG for the traceback)"
        common.err_console.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {_one_line(exc)}{hint}",
            highlight=False,
        )
        return exitcodes.SOFTWARE
    return code if isinstance(code, int) else exitcodes.OK


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _fail(kind: str, exc: BaseException, code: int) -> int:
    common.err_console.print(f"[red]{kind}:[/red] {_one_line(exc)}", highlight=False)
    return code


def _usage_error(exc: Exception) -> int | None:
    """Exit 2 after one line for Click's errors (bad flag, bad value), else None.

    Recognised by Click's exception interface (``exit_code`` and ``format_message``), as Typer
    re-exports only some of the classes of the Click it bundles."""
    format_message = getattr(exc, "format_message", None)
    if not (hasattr(exc, "exit_code") and callable(format_message)):
        return None
    if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
        return exitcodes.USAGE
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    common.err_console.print(
        f"[red]usage error:[/red] {' '.join(str(format_message()).split())}{hint}",
        highlight=False,
    )
    return exitcodes.USAGE
