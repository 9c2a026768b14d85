"""``batchml queue items`` and ``batchml queue show``: read-only views of single items.

What ``rq info`` / ``celery inspect`` users reach for first: which items are in a state, and
everything about one item (payload, attempts and their history, last error, outputs, what it
waits for and what waits for it). Both open the queue with ``create=False``: a mistyped queue
URL is refused, never created, and nothing is changed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from batchml.cli.common import console, queue
from batchml.errors import ConfigError, UnknownItem
from batchml.queue.base import AttemptRecord, Item, State

#: how many of the queue's most recent ended attempts ``queue show`` searches for the item's
#: own (the Redis backend keeps this many; SQLite keeps all)
HISTORY_SCAN = 10_000


def emit_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout, without colour or wrapping."""
    typer.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))


def item_json(item: Item) -> dict[str, Any]:
    """An item as ``queue items --json`` and ``queue show --json`` print it."""
    return {
        "id": item.id,
        "state": item.state.value,
        "task": item.payload.get("task"),
        "run": item.payload.get("run"),
        "payload": item.payload,
        "attempts": item.attempts,
        "max_attempts": item.max_attempts,
        "priority": item.priority,
        "depends_on": list(item.depends_on),
        "worker": item.worker,
        "token": item.token,
        "deadline": item.deadline,
        "available_at": item.available_at,
        "last_error": item.last_error,
        "result": item.result,
        "outputs": [p.to_json() for p in item.outputs],
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


def attempt_json(record: AttemptRecord) -> dict[str, Any]:
    return {
        "token": record.token,
        "worker": record.worker,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "outcome": record.outcome,
        "error": record.error,
    }


def _states(names: list[str] | None) -> list[State] | None:
    if not names:
        return None
    try:
        return [State(n.lower()) for n in names]
    except ValueError:
        raise ConfigError(
            f"--state {', '.join(names)}: the states are {', '.join(State)}"
        ) from None


def items(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help=f"Only items in this state (repeatable): {', '.join(State)}."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only items of this task.")] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Only items of this run (payload 'run').")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many items.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List items in push order: id, state, task, run, attempts, last error.

    --json prints {"items": [ITEM, ...], "shown": N, "matched": M} where ITEM is what
    `queue show --json` prints without "history" and "dependents", and "matched" counts every
    item the filters match (--limit shows the first N). Read-only."""
    wanted = _states(state)
    with queue(ctx, create=False) as q:
        found = [
            i
            for i in q.items(wanted)
            if (task is None or i.payload.get("task") == task)
            and (run is None or i.payload.get("run") == run)
        ]
    shown = found[:limit]
    if as_json:
        emit_json({"items": [item_json(i) for i in shown], "shown": len(shown),
                   "matched": len(found)})  # fmt: skip
        return
    table = Table("id", "state", "task", "run", "attempts", "last error", box=None)
    for i in shown:
        error = (i.last_error or "").splitlines()[0][:80] if i.last_error else ""
        table.add_row(
            escape(i.id), i.state.value, escape(str(i.payload.get("task", ""))),
            escape(str(i.payload.get("run", ""))), f"{i.attempts}/{i.max_attempts}",
            escape(error),
        )  # fmt: skip
    console.print(table)
    more = f" (first {len(shown)}; raise --limit)" if len(found) > len(shown) else ""
    console.print(f"{len(found)} item(s){more}", highlight=False)


def show(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Everything about one item: payload, state, attempts, each ended attempt, last error,
    result, outputs, dependencies and dependents.

    --json prints the item's fields (id, state, task, run, payload, attempts, max_attempts,
    priority, depends_on, worker, token, deadline, available_at, last_error, result, outputs
    [{staged, final, sha256}], created_at, updated_at; times in seconds since the epoch) plus
    "dependencies" [{id, state}], "dependents" [{id, state}] (the items that name it in
    depends_on) and "history" [{token, worker, started_at, ended_at, outcome, error}], oldest
    first, from the queue's last 10,000 ended attempts. An unknown id exits 1. Read-only."""
    with queue(ctx, create=False) as q:
        try:
            item = q.get(item_id)
        except UnknownItem:
            raise UnknownItem(
                f"no item {item_id!r} in {q.url}; `batchml queue items` lists them"
            ) from None
        everything = q.items()
        history = [r for r in q.history(HISTORY_SCAN) if r.item_id == item_id]
    state_of = {i.id: i.state.value for i in everything}
    needed_by = [i for i in everything if item_id in i.depends_on]
    data = {
        **item_json(item),
        "dependencies": [{"id": d, "state": state_of.get(d)} for d in item.depends_on],
        "dependents": [{"id": i.id, "state": i.state.value} for i in needed_by],
        "history": [attempt_json(r) for r in history],
    }
    if as_json:
        emit_json(data)
        return
    _print_item(data)


def _print_item(data: dict[str, Any]) -> None:
    def line(label: str, value: object) -> None:
        console.print(f"[bold]{label:13}[/bold] {escape(str(value))}", highlight=False)

    line("id", data["id"])
    line("state", data["state"])
    line("task", data["task"])
    line("run", data["run"])
    line("attempts", f"{data['attempts']} of {data['max_attempts']}")
    if data["worker"]:
        line("leased by", f"{data['worker']} (token {data['token']})")
    line("payload", json.dumps(data["payload"], sort_keys=True))
    for key, label in (("dependencies", "depends on"), ("dependents", "needed by")):
        listed = ", ".join(f"{d['id']} ({d['state']})" for d in data[key])
        line(label, listed or "-")
    line("last error", data["last_error"] or "-")
    if data["result"] is not None:
        line("result", json.dumps(data["result"], sort_keys=True))
    for out in data["outputs"]:
        line("output", f"{out['final']} (sha256 {out['sha256'][:12]})")
    for r in data["history"]:
        error = f": {r['error']}" if r["error"] else ""
        line("attempt", f"token {r['token']} on {r['worker']}: {r['outcome']}{error}")
