"""How a workload adds its own parts to a run's report, without the report knowing the workload.

The report itself is generic (:mod:`batchml.report.render`, :mod:`batchml.report.html`): the
run, the versions of its lineage (every record whose ``lineage`` head is one of the queue's
current versions), the numeric fields of each version's result, and the attempt timeline. A
workload contributes the rest through a :class:`ReportSection`:

* ``applies(records)``: whether the run has anything for it (a section never appears in the
  report of a run that does not use its workload);
* ``version_fields(record)``: more fields for a version's entry in report.json (fields of the
  generic entry are never replaced);
* ``version_lines(version)``: the lines of that version's block in report.txt, instead of the
  generic ``name: value`` lines (None keeps them);
* ``text``, ``json``, ``html``: more text after the blocks of report.txt, an entry under
  ``sections.<name>`` of report.json, and ``<section>`` elements of report.html;
* ``plots``: SVG plots the dashboard shows, by name (the name ``metrics`` replaces the generic
  plot of the versions' numeric fields);
* ``covers_metrics``: True when its ``html`` shows the versions' metrics itself, so the page
  leaves out the generic metrics section.

Sections are installed in the entry-point group ``batchml.report_sections`` (the entry point's
name is the section's name, its value ``module:object``: a ReportSection subclass or instance),
as batchml registers the fraud workload's :mod:`batchml.fraud.report`; or passed by the caller.
Whatever a section renders must depend on the records and the storage alone, so the same
records give the same report bytes.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from batchml.errors import ConfigError
from batchml.storage import Storage

#: the entry-point group installed packages register their report sections in
ENTRY_POINT_GROUP = "batchml.report_sections"


@dataclass(frozen=True)
class ReportContext:
    """What a section renders from.

    ``records``: every record of the run (stale ones included, as read from the storage);
    ``lineage``: the records of the current lineage's versions, oldest first; ``report``: the
    machine-readable report (:func:`batchml.report.build_report`)."""

    storage: Storage
    run: str
    records: list[dict[str, Any]]
    lineage: list[dict[str, Any]]
    report: dict[str, Any]


class ReportSection(abc.ABC):
    """A workload's part of the report (see the module's docstring)."""

    #: the section's name: its key under ``sections`` in report.json
    name: str = ""
    #: its heading
    title: str = ""
    #: True when :meth:`html` shows the metrics per version (the generic section is left out)
    covers_metrics: bool = False

    @abc.abstractmethod
    def applies(self, records: Sequence[dict[str, Any]]) -> bool:
        """Whether the run (these are its records) has anything for this section."""

    @abc.abstractmethod
    def html(self, ctx: ReportContext) -> str:
        """``<section>`` elements of report.html (self-contained: no script, no link)."""

    def version_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """More fields for the report.json entry of the version this lineage record made."""
        return {}

    def version_lines(self, version: dict[str, Any]) -> list[str] | None:
        """The lines under ``---`` in this version's report.txt block; None: the generic ones."""
        return None

    def text(self, ctx: ReportContext) -> str:
        """Text appended to report.txt after the version blocks ("" for none)."""
        return ""

    def json(self, ctx: ReportContext) -> Any:
        """The value of ``sections.<name>`` in report.json (None: no entry)."""
        return None

    def plots(self, ctx: ReportContext) -> dict[str, str]:
        """The dashboard's plots of this section: name -> SVG text."""
        return {}


def _section(point: EntryPoint) -> ReportSection:
    try:
        obj = point.load()
        if isinstance(obj, type) and issubclass(obj, ReportSection):
            obj = obj()
    except Exception as exc:
        raise ConfigError(
            f"report section {point.name!r} ({point.value}, entry point of "
            f"{ENTRY_POINT_GROUP!r}) cannot be loaded: {type(exc).__name__}: {exc}; "
            "reinstall or uninstall the package that registers it"
        ) from None
    if not isinstance(obj, ReportSection):
        raise ConfigError(
            f"report section {point.name!r} ({point.value}) is no ReportSection but "
            f"{type(obj).__name__}; uninstall the package that registers it"
        )
    if not obj.name:
        obj.name = point.name
    return obj


def installed_sections(points: Iterable[EntryPoint] | None = None) -> list[ReportSection]:
    """The sections of the entry-point group (``points``: by default the installed ones),
    ordered by name; one that cannot be loaded, or two of one name, is a ConfigError."""
    if points is None:
        points = entry_points(group=ENTRY_POINT_GROUP)
    sections: dict[str, ReportSection] = {}
    targets: dict[str, str] = {}
    for point in sorted(points, key=lambda p: (p.name, p.value)):
        if point.name in targets:
            if targets[point.name] == point.value:
                continue  # the same entry point seen twice (an editable install)
            raise ConfigError(
                f"report section {point.name!r} is registered twice in {ENTRY_POINT_GROUP!r}, "
                f"as {targets[point.name]} and {point.value}; uninstall one"
            )
        targets[point.name] = point.value
        sections[point.name] = _section(point)
    return [sections[name] for name in sorted(sections)]


def applicable(
    sections: Sequence[ReportSection] | None, records: Sequence[dict[str, Any]]
) -> list[ReportSection]:
    """The sections (None: the installed ones) that have something for a run's records."""
    chosen = installed_sections() if sections is None else list(sections)
    return [s for s in chosen if s.applies(records)]
