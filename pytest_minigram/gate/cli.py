"""``python -m pytest_minigram compare A B --fail p95:+10%``."""


from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pytest_minigram.gate.compare import compare_runs
from pytest_minigram.gate.table import _change, format_table
from pytest_minigram.gate.tolerance import DEFAULT_METRICS, _kind, parse_tolerances
from pytest_minigram.gate.windows import GateConfig
from pytest_minigram.storage import BaselineError, load_run, open_storage

# --- python -m pytest_minigram compare ---

def _load(ref: str, storage: str | None) -> dict[str, Any]:
    if storage is None:
        return load_run(ref)
    st = open_storage(storage)
    try:
        return st.load(ref)
    finally:
        st.close()


def cli(argv: list[str] | None = None) -> int:
    """Exit 0: no regression; 1: a regression; 2: usage error or unusable file."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_minigram compare",
        description="Compare two saved pytest-minigram runs without running tests",
    )
    parser.add_argument("baseline", help="Baseline results file (or run name with --storage)")
    parser.add_argument("current", help="Current results file (or run name with --storage)")
    parser.add_argument("--fail", metavar="EXPR", action="append", default=[],
                        help="Tolerances, e.g. p95:+10%%,throughput:-10%%,error_rate:+0.5pp")
    parser.add_argument("--metrics", metavar="LIST", default=None,
                        help=f"Metrics to show (default: {','.join(DEFAULT_METRICS)})")
    parser.add_argument("--storage", metavar="DIR|URL", default=None,
                        help="Resolve the two runs ('latest', a number, a name) in this storage")
    parser.add_argument("--alpha", type=float, default=GateConfig.alpha,
                        help="Significance level of the bootstrap test on the floor shift")
    parser.add_argument("--min-samples", type=int, default=GateConfig.min_samples,
                        help="Steady-state one-second windows needed on each side")
    parser.add_argument("--json", action="store_true", help="Print the comparison as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        tolerances = parse_tolerances(args.fail)
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] \
            if args.metrics else None
        for m in metrics or ():
            _kind(m)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        baseline, current = _load(args.baseline, args.storage), _load(args.current, args.storage)
        report = compare_runs(
            baseline, current, tolerances, metrics=metrics,
            config=GateConfig(alpha=args.alpha, min_samples=args.min_samples),
            baseline_source=args.baseline,
        )
    except BaselineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, TypeError) as exc:
        print(f"error: cannot compare {args.baseline} with {args.current}: {exc}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_table(report))
        for comp in report.comparisons:
            for ch in comp.regressions:
                print(f"REGRESSION: {comp.test} (stage {comp.stage}): {ch.metric} "
                      f"{_change(ch)} beyond {ch.tolerance}, p={ch.p_value:.3g}",
                      file=sys.stderr)
    return 1 if report.has_regression else 0
