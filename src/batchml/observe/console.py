"""The Rich rendering of a status snapshot (:mod:`batchml.observe.status`) for the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from batchml.queue.base import State

#: a bar of eight levels per minute, for the throughput sparkline
_BARS = " ▁▂▃▄▅▆▇█"
_STATE_STYLE = {
    "done": "green", "dead": "red", "leased": "cyan", "ready": "yellow", "blocked": "magenta",
}  # fmt: skip


def ago(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``: a short duration; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def counts_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"queue {data['queue']}", title_justify="left")
    for state in State:
        table.add_column(state.value, justify="right", style=_STATE_STYLE.get(state.value))
    table.add_column("total", justify="right", style="bold")
    if data.get("run_counts") is not None:
        table.add_column("", style="dim")
        table.add_row(*(str(data["counts"][s.value]) for s in State), str(data["total"]), "queue")
        run = data["run_counts"]
        table.add_row(
            *(str(run[s.value]) for s in State), str(sum(run.values())), f"run {data['run']!r}"
        )
        return table
    table.add_row(*(str(data["counts"][s.value]) for s in State), str(data["total"]))
    return table


def _state(worker: dict[str, Any]) -> str:
    if worker["alive"]:
        return str(worker["state"])
    if worker["state"] == "exited":
        return "[dim]exited[/dim]"
    return f"[red]silent[/red] [dim](was {worker['state']})[/dim]"


def workers_table(data: dict[str, Any], gone_shown: int = 10) -> Table:
    """Every live worker, and the ``gone_shown`` most recently seen of the others."""
    alive = [w for w in data["workers"] if w["alive"]]
    gone = [w for w in data["workers"] if not w["alive"]]
    title = f"workers: {len(alive)} alive, {len(gone)} gone"
    if len(gone) > gone_shown:
        title += f" ({len(gone) - gone_shown} not shown)"
    table = Table(title=title, title_justify="left")
    for name in ("worker", "host", "state", "item", "for", "done", "seen"):
        if name in ("for", "done", "seen"):
            table.add_column(name, justify="right", no_wrap=True)
        else:  # ids are folded onto more lines when narrow, never cut with an ellipsis
            table.add_column(name, overflow="fold")
    now = data["now"]
    for w in alive + gone[:gone_shown]:
        since = now - w["item_since"] if w.get("item_since") else None
        table.add_row(
            w["id"],
            w["host"],
            _state(w),
            w.get("item_id") or "-",
            ago(since),
            str(w["processed"]),
            ago(w["seen_ago"]) + " ago",
        )
    return table


def sparkline(minutes: list[dict[str, Any]]) -> str:
    done = [int(m.get("done", 0)) for m in minutes]
    top = max(done) if done else 0
    if top == 0:
        return "·" * len(done)
    return "".join(_BARS[round(8 * n / top)] if n else "·" for n in done)


def lineage_line(data: dict[str, Any]) -> Text:
    head = data["lineage_head"]
    ckpt = (head.get("checkpoint") or {}).get("final", "-")
    return Text(
        f"lineage {data['run']!r}: v{head['version']} dataset={head['dataset'] or '-'} "
        f"checkpoint={ckpt}"
    )


def throughput_line(data: dict[str, Any]) -> Text:
    t = data["throughput"]
    failed = sum(int(m.get("failed", 0)) + int(m.get("dead", 0)) for m in t["minutes"])
    lost = sum(int(m.get("expired", 0)) for m in t["minutes"])
    span = ago(t["observed_seconds"]) if t["observed_seconds"] else "-"
    return Text(
        f"throughput, last {t['window_minutes']} min: {t['done']} done in {span} "
        f"({_rate(t['done_per_minute'])}/min) [{sparkline(t['minutes'])}]  failed {failed}, "
        f"leases expired {lost}"
    )


def _rate(per_minute: float) -> str:
    return f"{per_minute:.1f}" if per_minute < 100 else f"{per_minute:.0f}"


def render(data: dict[str, Any]) -> RenderableType:
    """Counts, workers, lineage head, throughput, leased, dead and blocked items."""
    parts: list[RenderableType] = [counts_table(data)]
    if data["workers"]:
        parts.append(workers_table(data))
    parts += [lineage_line(data), throughput_line(data)]
    for lease in data["leased"]:
        parts.append(
            Text(f"leased  {lease['id']} by {lease['worker']} (attempt {lease['attempt']})")
        )
    for item in data["dead"]:
        line = Text("dead    ", style="red")
        line.append(f"{item['id']} after {item['attempts']} attempt(s): {item['error']}")
        parts.append(line)
    if data["counts"]["dead"] > len(data["dead"]):
        parts.append(Text(f"… and {data['counts']['dead'] - len(data['dead'])} more dead"))
    blocked = data.get("blocked", [])
    for item in blocked:
        line = Text("blocked ", style="magenta")
        line.append(f"{item['id']}: {item['reason']}")
        parts.append(line)
    if data["counts"].get("blocked", 0) > len(blocked):
        parts.append(Text(f"… and {data['counts']['blocked'] - len(blocked)} more blocked"))
    return Group(*parts)
