"""The project report page (``mfollow report``): one HTML file made from a project's cache, with
its media written beside it, that opens from disk in any browser (docs/report.md)."""

from mfollow.report.page import ReportSettings, write_report

__all__ = ["ReportSettings", "write_report"]
