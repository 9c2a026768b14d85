"""``batchml worker``: lease, run, commit until the queue is drained."""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated

import typer

from batchml import exitcodes
from batchml.cli.common import console, existing_root, queue, settings
from batchml.errors import ConfigError
from batchml.observe.hooks import worker_observers
from batchml.observe.metrics import DEFAULT_ADDRESS
from batchml.report import write_reports
from batchml.worker.loop import Worker
from batchml.worker.retry import UnavailableRetry

log = logging.getLogger("batchml.worker")

#: seconds ``--check`` waits to connect and for the reply (a probe must answer fast)
CHECK_TIMEOUT = 2.0


def worker(
    ctx: typer.Context,
    lease_ttl: Annotated[
        float, typer.Option(envvar="BATCHML_LEASE_TTL", help="Seconds a lease lasts unrenewed.")
    ] = 60.0,
    heartbeat: Annotated[
        float | None,
        typer.Option(envvar="BATCHML_HEARTBEAT", help="Seconds between renewals (TTL/3)."),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            envvar="BATCHML_GRACE",
            help="After SIGTERM, seconds to finish the current item before releasing it "
            "(keep below the pod's terminationGracePeriodSeconds).",
        ),
    ] = 20.0,
    poll: Annotated[
        float, typer.Option(envvar="BATCHML_POLL", help="Seconds between polls when idle.")
    ] = 0.5,
    max_items: Annotated[
        int | None, typer.Option(envvar="BATCHML_MAX_ITEMS", help="Stop after N items.")
    ] = None,
    worker_id: Annotated[
        str | None,
        typer.Option(
            envvar="BATCHML_WORKER_ID",
            help="Name in queue status and logs (default: host-pid-random; unique per worker).",
        ),
    ] = None,
    queue_retry: Annotated[
        float,
        typer.Option(
            envvar="BATCHML_QUEUE_RETRY",
            help="Seconds to keep retrying an unreachable queue before exiting 69.",
        ),
    ] = 120.0,
    prefetch: Annotated[
        int,
        typer.Option(
            envvar="BATCHML_PREFETCH",
            help="Leases held at once: N > 1 leases N items in one round trip and commits the "
            "finished ones in one (items without a lineage step), for many small items.",
        ),
    ] = 1,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Exit 0 if the queue is reachable, 69 if not, 78 if it does not exist."
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="BATCHML_METRICS_PORT",
            help="Serve Prometheus /metrics on this port (0: any free port, logged).",
        ),
    ] = None,
    progress_every: Annotated[
        float | None,
        typer.Option(
            envvar="BATCHML_PROGRESS_EVERY",
            min=0,
            help="Seconds between progress updates (items left in the queue, rate, ETA): a "
            "live line on a terminal (default 1), else a log line (default 30; 0: every item).",
        ),
    ] = None,
    metrics_address: Annotated[
        str,
        typer.Option(
            envvar="BATCHML_METRICS_ADDRESS",
            help="The address /metrics listens on: 127.0.0.1 (this machine only), or 0.0.0.0 "
            "(every interface, e.g. in a pod Prometheus scrapes).",
        ),
    ] = DEFAULT_ADDRESS,
) -> None:
    """Work through the queue; exit 0 once drained with nothing dead (1 if items are dead)."""
    s = settings(ctx).with_worker(
        lease_ttl=lease_ttl, heartbeat_every=heartbeat, grace=grace, poll_interval=poll,
        max_items=max_items, queue_retry=queue_retry, prefetch=prefetch,
    )  # fmt: skip
    if metrics_port is not None and not 0 <= metrics_port <= 65535:
        raise ConfigError(
            f"--metrics-port / BATCHML_METRICS_PORT {metrics_port} is not a TCP port (0-65535)"
        )
    if check:
        with queue(ctx, timeout=CHECK_TIMEOUT, create=False) as q:
            q.ping()
            console.print(f"queue reachable: {q.url}")
        raise typer.Exit(exitcodes.OK)
    existing_root(ctx)
    # Opening is retried like every later call: a pod that starts while Redis restarts (or before
    # its Service answers) waits up to --queue-retry instead of exiting 69 on the first refusal.
    opening = UnavailableRetry(budget=s.worker.queue_retry)
    with opening.call(partial(queue, ctx, create=False), "open the queue", log) as q:
        with worker_observers(q, s.run, metrics_port, metrics_address, progress_every) as observers:
            w = Worker(q, s.storage(), s, worker_id, observers)
            code = w.run()
        if code in (exitcodes.OK, exitcodes.DEAD_ITEMS):  # drained: the report is final
            # reading the queue for it rides out a blip as the work did: the work is done, and
            # a Job must not retry a pod for a reply lost on the way to the report
            retry = UnavailableRetry(budget=s.worker.queue_retry)
            for run in sorted(w.runs_seen | {s.run}):
                retry.call(partial(write_reports, s.storage(), run, q), f"report {run}", log)
    raise typer.Exit(code)
