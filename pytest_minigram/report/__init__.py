"""The HTML comparison report: run files -> context dict -> one self-contained page."""

from __future__ import annotations

from pytest_minigram.report.context import ReportInputError, build_context
from pytest_minigram.report.render import render, render_runs, write_report

__all__ = ["ReportInputError", "build_context", "render", "render_runs", "write_report"]
