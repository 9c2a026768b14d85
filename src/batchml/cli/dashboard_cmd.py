"""``batchml dashboard``: the live queue, workers, lineage and plots in a browser."""

from __future__ import annotations

from typing import Annotated

import typer

from batchml.cli.common import console, existing_root, queue
from batchml.web.app import Dashboard, create_app
from batchml.web.server import DashboardServer


def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(envvar="BATCHML_DASHBOARD_HOST", help="Address to listen on."),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            envvar="BATCHML_DASHBOARD_PORT", min=0, max=65535, help="TCP port to serve on."
        ),
    ] = 8265,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="BATCHML_DASHBOARD_TOKEN",
            help="Allow requeueing dead items from the page with this token (read-only without).",
        ),
    ] = None,
    refresh: Annotated[
        float, typer.Option(min=0.5, help="Seconds between the page's refreshes.")
    ] = 3.0,
) -> None:
    """Serve a dashboard of the queue and the run's lineage until Ctrl-C."""
    s = existing_root(ctx)
    with queue(ctx, create=False) as q:
        board = Dashboard(q, s.storage(), s.run, token or None, refresh_seconds=refresh)
        server = DashboardServer(create_app(board, host), host, port)
        mode = "requeue allowed with the token" if token else "read-only"
        console.print(f"dashboard of {q.url} (run {s.run!r}, {mode}) on {server.url}/")
        server.run()
