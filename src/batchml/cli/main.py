"""``batchml``: the command line. Every option also reads a ``BATCHML_*`` environment variable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from batchml import __version__, exitcodes, logs
from batchml.cli import common, data, queue_cmd, report_cmd, worker_cmd
from batchml.errors import BatchmlError, ConfigError, QueueUnavailable
from batchml.settings import DEFAULT_ROOT, DEFAULT_RUN, Settings
from batchml.tasks.registry import parse_modules

app = typer.Typer(
    name="batchml",
    help="Fault-tolerant batch ML: a work queue, workers that may die at any moment, "
    "and results exactly as if nothing went wrong.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
    log_level: Annotated[
        str, typer.Option(envvar="BATCHML_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
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
    )  # fmt: skip
    ctx.obj = common.State(settings)


def _register_late_commands() -> None:
    from batchml.cli import dashboard_cmd, demo_cmd, fraud_cmd, lineage_cmd

    app.command("demo")(demo_cmd.demo)
    app.command("dashboard")(dashboard_cmd.dashboard)
    app.add_typer(fraud_cmd.app, name="fraud")
    app.add_typer(lineage_cmd.app, name="lineage")


_register_late_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; expected failures print one line and exit with a meaningful code.

    Usage errors are Typer's (exit 2); a BatchmlError raised by a command becomes one line on
    stderr, with no traceback, and the exit code of :mod:`batchml.exitcodes`.
    """
    try:
        app(args=argv, prog_name="batchml")
        code = exitcodes.OK
    except ConfigError as exc:
        common.err_console.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        code = exitcodes.CONFIG
    except QueueUnavailable as exc:
        common.err_console.print(f"[red]queue unavailable:[/red] {exc}", highlight=False)
        code = exitcodes.UNAVAILABLE
    except BatchmlError as exc:
        common.err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
