"""Reports rendered from the records of committed items (one file per item, never appended).

Generic: a run's lineage versions, their numeric results and the attempt timeline; a workload
adds its parts through :class:`~batchml.report.sections.ReportSection`."""

from batchml.report.render import build_report, render_text, write_reports
from batchml.report.sections import ReportContext, ReportSection

__all__ = ["ReportContext", "ReportSection", "build_report", "render_text", "write_reports"]
