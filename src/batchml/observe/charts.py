"""Small SVG charts, written as text: line charts, bar charts and a per-worker timeline.

No plotting library and no script: the report opens offline and the same data always gives the
same bytes (coordinates are rounded to 0.1 px, numbers printed with fixed precision). Every
chart is an ``<svg>`` element with ``data-plot=<name>`` and a ``<title>``, so pages and tests
can find it; points and bars carry ``<title>`` tooltips with their values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from batchml.queue.base import Outcome

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
OUTCOME_COLORS: dict[str, str] = {
    Outcome.DONE: "#2ca02c",
    Outcome.FAILED: "#ff7f0e",
    Outcome.DEAD: "#d62728",
    Outcome.EXPIRED: "#9467bd",
    Outcome.RELEASED: "#7f7f7f",
    "running": "#1f77b4",  # an attempt still under way (the dashboard's timeline)
}
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    color: str = PALETTE[0]
    dashed: bool = False
    markers: bool = True


@dataclass(frozen=True)
class Frame:
    """A plotting area: pixel size, margins and the data ranges mapped onto it."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: int = 52
    right: int = 16
    top: int = 38
    bottom: int = 40

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        share = (value - lo) / (hi - lo) if hi > lo else 0.5
        return self.left + share * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        share = (value - lo) / (hi - lo) if hi > lo else 0.5
        return self.height - self.bottom - share * (self.height - self.top - self.bottom)


def num(value: float) -> str:
    """A coordinate: one decimal, no trailing zeros, never ``-0``."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + step * 1e-9:
        ticks.append(round(first + k * step, 10))
        k += 1
    return ticks


def tick_label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


def _open(name: str, frame: Frame, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" data-plot="{escape(name)}" role="img" '
        f'width="{frame.width}" height="{frame.height}" '
        f'viewBox="0 0 {frame.width} {frame.height}" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<text x="{frame.left}" y="14" font-size="13" font-weight="600">{escape(title)}</text>',
    ]


def _axes(
    frame: Frame,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[float],
) -> list[str]:
    base, top = frame.height - frame.bottom, frame.top
    left, right = frame.left, frame.width - frame.right
    out = [f'<g class="axes" stroke="#999" fill="none"><rect x="{left}" y="{top}" '
           f'width="{right - left}" height="{base - top}"/></g>']  # fmt: skip
    for value in y_ticks:
        y = num(frame.y(value))
        out.append(f'<line x1="{left}" x2="{right}" y1="{y}" y2="{y}" stroke="#eee"/>')
        out.append(
            f'<text x="{left - 4}" y="{y}" text-anchor="end" dominant-baseline="middle">'
            f"{tick_label(value)}</text>"
        )
    for value, label in x_ticks:
        x = num(frame.x(value))
        out.append(f'<line x1="{x}" x2="{x}" y1="{base}" y2="{base + 4}" stroke="#999"/>')
        out.append(f'<text x="{x}" y="{base + 15}" text-anchor="middle">{escape(label)}</text>')
    out.append(
        f'<text x="{num((left + right) / 2)}" y="{frame.height - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(12 {num((top + base) / 2)}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return out


def _legend(frame: Frame, series: Sequence[Series]) -> list[str]:
    """Coloured keys on the line under the title, right-aligned."""
    out = []
    x = frame.width - frame.right
    for s in reversed(series):
        x -= 7 * len(s.name) + 24
        out.append(
            f'<g class="legend"><rect x="{x}" y="20" width="10" height="10" fill="{s.color}"/>'
            f'<text x="{x + 14}" y="29">{escape(s.name)}</text></g>'
        )
    return out


def _range(values: Sequence[float], pad_zero: bool = False) -> tuple[float, float]:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if pad_zero:
        lo = min(lo, 0.0)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def line_chart(
    name: str,
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    x_format: Callable[[float], str] = tick_label,
    size: tuple[int, int] = (560, 300),
) -> str:
    """Lines (with point markers and tooltips) over shared axes."""
    xs = [p[0] for s in series for p in s.points]
    ys = [p[1] for s in series for p in s.points]
    frame = Frame(size[0], size[1], x_range or _range(xs), y_range or _range(ys))
    x_ticks = [(v, x_format(v)) for v in nice_ticks(*frame.x_range, count=6)]
    out = _open(name, frame, title)
    out += _axes(frame, x_label, y_label, x_ticks, nice_ticks(*frame.y_range))
    for s in series:
        if not s.points:
            continue
        coords = " ".join(f"{num(frame.x(x))},{num(frame.y(y))}" for x, y in s.points)
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        out.append(
            f'<polyline data-series="{escape(s.name)}" points="{coords}" fill="none" '
            f'stroke="{s.color}" stroke-width="1.6"{dash}/>'
        )
        if s.markers:
            for x, y in s.points:
                out.append(
                    f'<circle cx="{num(frame.x(x))}" cy="{num(frame.y(y))}" r="2.2" '
                    f'fill="{s.color}"><title>{escape(s.name)} at {x_format(x)}: {y:.4f}'
                    "</title></circle>"
                )
    out += _legend(frame, series)
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(
    name: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    y_label: str,
    color: str = PALETTE[0],
    size: tuple[int, int] = (560, 260),
) -> str:
    """One bar per label; about eight labels are written under the axis, all in tooltips."""
    frame = Frame(size[0], size[1], (0.0, float(max(len(labels), 1))), _range(values, True))
    every = max(1, math.ceil(len(labels) / 8))
    x_ticks = [(k + 0.5, label) for k, label in enumerate(labels) if k % every == 0]
    out = _open(name, frame, title)
    out += _axes(frame, "", y_label, x_ticks, nice_ticks(*frame.y_range))
    slot = frame.x(1.0) - frame.x(0.0)
    for k, (label, value) in enumerate(zip(labels, values, strict=True)):
        y0, y1 = frame.y(0.0), frame.y(value)
        out.append(
            f'<rect data-label="{escape(label)}" data-value="{value:g}" '
            f'x="{num(frame.x(k) + slot * 0.1)}" y="{num(min(y0, y1))}" '
            f'width="{num(slot * 0.8)}" height="{num(abs(y0 - y1))}" fill="{color}">'
            f"<title>{escape(label)}: {value:g}</title></rect>"
        )
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True)
class Span:
    """One attempt on the timeline: seconds from the run's start, in a worker's lane."""

    lane: str
    start: float
    end: float
    outcome: str
    label: str


def timeline(name: str, title: str, spans: Sequence[Span], *, width: int = 1100) -> str:
    """A lane per worker, a bar per attempt coloured by its outcome (legend included)."""
    lanes = sorted({s.lane for s in spans})
    lane_height = 22
    end = max((s.end for s in spans), default=1.0)
    left = min(max((len(lane) for lane in lanes), default=8) * 7 + 14, 280)
    height = 38 + lane_height * max(len(lanes), 1) + 48
    frame = Frame(width, height, (0.0, max(end, 1e-3)), (0.0, 1.0), left=left, bottom=48)
    out = _open(name, frame, title)
    ticks = [(v, f"{tick_label(v)}s") for v in nice_ticks(0.0, frame.x_range[1], count=8)]
    out += _axes(frame, "seconds since the first lease", "", ticks, [])
    for k, lane in enumerate(lanes):
        y = frame.top + k * lane_height
        out.append(
            f'<text x="{left - 6}" y="{y + lane_height / 2 + 4:.0f}" text-anchor="end">'
            f"{escape(lane)}</text>"
        )
        for s in (s for s in spans if s.lane == lane):
            x0 = frame.x(s.start)
            w = max(frame.x(s.end) - x0, 1.0)
            color = OUTCOME_COLORS.get(s.outcome, "#000")
            out.append(
                f'<rect data-outcome="{escape(s.outcome)}" x="{num(x0)}" y="{y + 3}" '
                f'width="{num(w)}" height="{lane_height - 6}" fill="{color}">'
                f"<title>{escape(s.label)}: {escape(s.outcome)}, {s.end - s.start:.2f}s</title>"
                "</rect>"
            )
    out += _legend(frame, [Series(o, [], c) for o, c in OUTCOME_COLORS.items() if o != "running"])
    out.append("</svg>")
    return "\n".join(out)
