"""The regression gate: compare a run against a baseline, metric by metric.

``tolerance`` parses ``p95:+10%``; ``windows`` turns a result into its per-second samples;
``stats`` holds the floors and the bootstrap tests; ``compare`` sets two runs side by side;
``table`` prints the outcome; ``cli`` is ``python -m pytest_minigram compare``. The method is
in docs/regression-gate.md.
"""

from __future__ import annotations

from pytest_minigram.gate.compare import (
    Change,
    ComparisonReport,
    TestComparison,
    compare_results,
    compare_runs,
)
from pytest_minigram.gate.stats import (
    bootstrap_floor_test,
    floor_of,
    hierarchical_floor_test,
    mann_whitney_u,
    quantile,
)
from pytest_minigram.gate.table import format_markdown, format_table
from pytest_minigram.gate.tolerance import Tolerance, parse_tolerance, parse_tolerances
from pytest_minigram.gate.windows import GateConfig

__all__ = [
    "Change",
    "ComparisonReport",
    "GateConfig",
    "TestComparison",
    "Tolerance",
    "bootstrap_floor_test",
    "compare_results",
    "compare_runs",
    "floor_of",
    "format_markdown",
    "format_table",
    "hierarchical_floor_test",
    "mann_whitney_u",
    "parse_tolerance",
    "parse_tolerances",
    "quantile",
]
