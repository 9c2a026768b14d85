"""Reports rendered from the records of committed items (one file per item, never appended)."""

from batchml.report.render import build_report, render_text, write_reports

__all__ = ["build_report", "render_text", "write_reports"]
