"""The dashboard: one page that polls JSON endpoints, and the endpoints behind it.

=======  ==========================  ==========================================================
method   path                        answer
=======  ==========================  ==========================================================
GET      ``/``                       the page (``static/index.html``; JS and CSS under /static)
GET      ``/api/config``             ``{"run", "queue", "can_requeue", "refresh_seconds"}``
GET      ``/api/status``             the ``queue status --json`` snapshot: counts, workers
                                     (alive or gone), lineage head, throughput, leased, dead
GET      ``/api/lineage``            ``{"run", "versions": [...]}``: report.json's versions
                                     of the queue's current lineage (dataset, checkpoint,
                                     worker, ``metrics``: the numeric fields of each result,
                                     and the fields the workload's report sections add)
GET      ``/api/plots``              ``{"plots": [{"name", "title"}, ...]}``: what the page
                                     shows: ``metrics``, ``throughput``, then the plots of the
                                     run's report sections
GET      ``/api/plots/metrics.svg``  the numeric result fields per lineage version (SVG), or
                                     the plot a report section names ``metrics`` (the fraud
                                     workload's: test ROC AUC and average precision)
GET      ``/api/plots/throughput.svg``  items done per minute over the last 10 minutes (SVG)
GET      ``/api/plots/<name>.svg``   a report section's plot (404 if none has that name)
POST     ``/api/requeue``            body ``{"ids": [...]}`` (omit for every dead item), header
                                     ``Authorization: Bearer <token>``; ``{"requeued": n}``.
                                     403 when the dashboard was started without a token
                                     (read-only), 401 when the token is missing or wrong
=======  ==========================  ==========================================================

The dashboard knows no workload: what it shows of one comes from the report sections
(:mod:`batchml.report.sections`) that apply to the run. The token is compared in constant time.
Reads never write: the lineage comes from the records as they are (no roll-forward), those of
the queue's current lineage only. Bound to 127.0.0.1 by default; requests naming another host are
refused (DNS rebinding) unless the dashboard listens on every interface.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from batchml.observe import status
from batchml.observe.charts import OUTCOME_COLORS, PALETTE, Series, bar_chart, line_chart
from batchml.queue.base import State, WorkQueue
from batchml.report.html import metric_names
from batchml.report.render import build_context
from batchml.report.sections import ReportContext, ReportSection
from batchml.storage import Storage

STATIC = Path(__file__).parent / "static"
SVG = "image/svg+xml"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class Dashboard:
    """What the endpoints read: the queue, the storage root, the run, and the requeue token."""

    queue: WorkQueue
    storage: Storage
    run: str
    token: str | None = None
    refresh_seconds: float = 3.0
    stale_after: float = 90.0
    #: the report sections to show (None: the installed ones), those that apply to the run
    sections: Sequence[ReportSection] | None = None

    def config(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "run": self.run,
                "queue": self.queue.url,
                "can_requeue": self.token is not None,
                "refresh_seconds": self.refresh_seconds,
            }
        )

    def status(self, request: Request) -> JSONResponse:
        options = status.StatusOptions(stale_after=self.stale_after)
        return JSONResponse(status.gather(self.queue, self.run, options))

    def _context(self) -> tuple[ReportContext, list[ReportSection]]:
        return build_context(self.storage, self.run, self.queue, self.sections, roll=False)

    def lineage(self, request: Request) -> JSONResponse:
        return JSONResponse({"run": self.run, "versions": self._context()[0].report["versions"]})

    def _section_plots(self) -> tuple[ReportContext, dict[str, str]]:
        ctx, sections = self._context()
        plots: dict[str, str] = {}
        for section in sections:
            for name, svg in section.plots(ctx).items():
                plots.setdefault(name, svg)
        return ctx, plots

    def plots(self, request: Request) -> JSONResponse:
        _, extra = self._section_plots()
        names = ["metrics", "throughput", *(n for n in extra if n not in ("metrics", "throughput"))]
        return JSONResponse({"plots": [{"name": n, "title": n.replace("-", " ")} for n in names]})

    def metrics_plot(self, request: Request) -> Response:
        ctx, extra = self._section_plots()
        svg = extra.get("metrics") or generic_metrics_plot(ctx.report["versions"])
        return Response(svg, media_type=SVG, headers={"Cache-Control": "no-store"})

    def section_plot(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        svg = self._section_plots()[1].get(name)
        if svg is None:
            return JSONResponse({"error": f"no plot named {name!r}"}, status_code=404)
        return Response(svg, media_type=SVG, headers={"Cache-Control": "no-store"})

    def throughput_plot(self, request: Request) -> Response:
        minutes = status.StatusOptions().window_minutes
        snapshot = status.throughput(self.queue.history(5000), self.queue.clock(), minutes)
        labels = [f"-{minutes - k}m" for k in range(minutes)]
        done = [float(m.get("done", 0)) for m in snapshot["minutes"]]
        svg = bar_chart(
            "throughput", f"Items done per minute (last {minutes} min)", labels, done,
            y_label="items", color=OUTCOME_COLORS["done"], size=(520, 280),
        )  # fmt: skip
        return Response(svg, media_type=SVG, headers={"Cache-Control": "no-store"})

    def _authorised(self, request: Request) -> JSONResponse | None:
        """None if the request may change the queue, else the refusal to send."""
        if self.token is None:
            return JSONResponse(
                {"error": "read-only dashboard: start it with --token to allow requeueing"},
                status_code=403,
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            return JSONResponse({"error": "wrong or missing token"}, status_code=401)
        return None

    async def requeue(self, request: Request) -> JSONResponse:
        refusal = self._authorised(request)
        if refusal is not None:
            return refusal
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        ids = body.get("ids") if isinstance(body, dict) else None
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            return JSONResponse({"error": "ids must be a list of item ids"}, status_code=400)
        count = self.queue.requeue_dead(ids or None)
        dead_left = self.queue.counts()[State.DEAD]
        return JSONResponse({"requeued": count, "dead": dead_left})


def generic_metrics_plot(versions: Sequence[dict[str, Any]]) -> str:
    """Every numeric result field per lineage version, one line each (the first 7)."""
    series = [
        Series(
            name,
            [(float(v["version"]), float(v["metrics"][name])) for v in versions
             if name in (v.get("metrics") or {})],
            PALETTE[k],
        )
        for k, name in enumerate(metric_names(versions)[: len(PALETTE)])
    ]  # fmt: skip
    return line_chart(
        "metrics", "Results per lineage version", series, x_label="lineage version",
        y_label="value", size=(520, 280),
    )  # fmt: skip


def index(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


def create_app(dashboard: Dashboard, host: str = "127.0.0.1") -> Starlette:
    """The Starlette application serving ``dashboard``; ``host`` is the address it listens on."""
    allowed = ["*"] if host in ("0.0.0.0", "::", "") else [*LOCAL_HOSTS, host]
    routes = [
        Route("/", index),
        Route("/api/config", dashboard.config),
        Route("/api/status", dashboard.status),
        Route("/api/lineage", dashboard.lineage),
        Route("/api/plots/metrics.svg", dashboard.metrics_plot),
        Route("/api/plots/throughput.svg", dashboard.throughput_plot),
        Route("/api/plots", dashboard.plots),
        Route("/api/plots/{name}.svg", dashboard.section_plot),
        Route("/api/requeue", dashboard.requeue, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed)]
    return Starlette(routes=routes, middleware=middleware)
