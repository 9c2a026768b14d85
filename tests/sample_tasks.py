"""User tasks for the worker tests, addressed as ``tests.sample_tasks:<name>``.

Each is a ``@batchml.task``, so a worker started with ``--tasks tests.sample_tasks`` (or given
``Settings(tasks=SAMPLE_TASKS)``) runs them; a worker without it refuses them."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from batchml import task
from batchml.errors import PayloadError
from batchml.queue.base import LineageHead
from batchml.storage import Storage
from batchml.tasks import TaskContext
from batchml.tasks.builtin import sleep as imported_sleep  # noqa: F401 - a @task defined elsewhere

#: the ``--tasks`` value that allows these tasks
SAMPLE_TASKS = ("tests.sample_tasks",)


@task
def write_output(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Write one output file whose content names the payload."""
    path = ctx.output(f"runs/{ctx.run}/out/{payload['name']}.txt")
    path.write_text(f"{payload['name']} by {ctx.worker_id}\n")
    return {"name": payload["name"]}


@task
def always_fail(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    ctx.output(f"runs/{ctx.run}/out/never.txt").write_text("must never be published\n")
    raise ValueError(f"poison item {payload.get('name')}")


@task
def slow_write(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Stage an output, then work for ``seconds`` while checking the lease."""
    ctx.output(f"runs/{ctx.run}/out/{payload['name']}.txt").write_text("slow\n")
    marker = payload.get("started_marker")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    end = time.monotonic() + float(payload.get("seconds", 1.0))
    while time.monotonic() < end:
        ctx.check()
        time.sleep(0.02)
    return {"name": payload["name"]}


@task
def not_a_dict(ctx: TaskContext, payload: dict[str, Any]) -> Any:
    return None


@task
def stamp_slowly(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Stage an output naming this worker, then work ``seconds`` without checking the lease,
    so a worker frozen past its lease only learns of it when its commit is refused."""
    ctx.output(f"runs/{ctx.run}/out/{payload['name']}.txt").write_text(f"{ctx.worker_id}\n")
    marker = payload.get("started_marker")
    if marker:
        Path(f"{marker}.{ctx.token}").write_text(f"{os.getpid()} {ctx.worker_id}")
    end = time.monotonic() + float(payload.get("seconds", 1.0))
    while time.monotonic() < end:
        time.sleep(0.02)
    return {"name": payload["name"], "worker": ctx.worker_id}


@task
def noop(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


def _needs_a_name(payload: dict[str, Any], storage: Storage) -> None:
    if not isinstance(payload.get("name"), str):
        raise PayloadError(f"sample payload needs a 'name' string, not {payload.get('name')!r}")


@task(validate=_needs_a_name)
def validated_write(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """write_output, behind a payload validator."""
    return write_output(ctx, payload)


def undecorated(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Not a @task: a worker must refuse it even with ``--tasks tests.sample_tasks``."""
    Path(str(payload["marker"])).write_text("ran\n")
    return {}


# -- storage integrity (tests/storage/test_storage_integrity.py) ---------------------------------


@task
def stage_and_wait(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Stage an output, write ``started_marker``, then wait (checking the lease) until the file
    ``go`` exists, so a test can act while this attempt holds its lease with a staged output."""
    out = ctx.output(ctx.storage.run_path(ctx.run, "out", f"{payload['name']}.txt"))
    out.write_text(f"{payload['name']} staged by {ctx.worker_id}\n")
    Path(payload["started_marker"]).write_text(str(os.getpid()))
    end = time.monotonic() + 60.0
    while not Path(payload["go"]).exists() and time.monotonic() < end:
        ctx.check()
        time.sleep(0.02)
    return {"name": payload["name"]}


@task
def swap_staging_for_symlink(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """After ``ctx.output``, replace the staged file's folder with a symlink to the folder
    ``outside`` (beyond the storage root), then write the output through it."""
    out = ctx.output(ctx.storage.run_path(ctx.run, "out", f"{payload['name']}.txt"))
    shutil.rmtree(out.parent)
    os.symlink(payload["outside"], out.parent)
    out.write_text("written through a swapped-in symlink\n")
    return {"name": payload["name"]}


# -- a user task that keeps its own lineage (tests/report/test_report_generic.py) ------------------


@task
def running_mean(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fold ``payload["values"]`` into the run's running mean: a "model" checkpointed as JSON,
    one lineage version per item (read from the head's checkpoint, advanced by the commit)."""
    head = ctx.lineage_head()
    state = {"count": 0, "total": 0.0}
    if head.checkpoint is not None:
        state = json.loads(ctx.storage.resolve(head.checkpoint.final).read_text())
    values = [float(v) for v in payload["values"]]
    state = {"count": state["count"] + len(values), "total": state["total"] + sum(values)}
    version = head.version + 1
    final = ctx.storage.run_path(ctx.run, "means", f"v{version:04d}.json")
    ctx.output(final).write_text(json.dumps(state, sort_keys=True) + "\n")
    step = LineageHead(
        run=ctx.run,
        version=version,
        checkpoint=ctx.publication(final),
        dataset=str(payload["name"]),
        item_id=ctx.item.id,
    )
    ctx.advance_lineage(head.version, step)
    return {
        "version": version,
        "count": state["count"],
        "mean": state["total"] / state["count"],
        "batch": {"size": len(values), "max": max(values)},
        "unit": "widgets",  # not a number: never a metric
        "converged": False,  # a bool: never a metric
    }


# -- network faults (tests/netfaults/) ----------------------------------------------------------


@task
def logged_attempt(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Record this attempt as a file of its own in the local folder ``attempts`` (outside the
    storage root, written at once, so fenced attempts are counted too), then stage an output
    naming the attempt and write to it every 0.1 s for ``seconds`` (storage I/O all along),
    checking the lease between writes when ``check`` (default true)."""
    name = f"{ctx.item.id}.t{ctx.token}.{ctx.worker_id}"
    Path(payload["attempts"], name).write_text(f"{os.getpid()}\n")
    out = ctx.output(f"runs/{ctx.run}/out/{ctx.item.id}.txt")
    end = time.monotonic() + float(payload.get("seconds", 1.0))
    with open(out, "w") as stream:
        stream.write(f"{ctx.item.id} {ctx.token} {ctx.worker_id}\n")
        while time.monotonic() < end:
            if payload.get("check", True):
                ctx.check()
            stream.write(".\n")
            stream.flush()
            time.sleep(0.1)
    return {"attempt": name}
