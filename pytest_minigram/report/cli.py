"""``python -m pytest_minigram report RESULTS.json... -o report.html [--baseline B.json]``"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_minigram.report.context import RUN_SCHEMA, ReportInputError, coerce_run
from pytest_minigram.report.render import write_report

DEFAULT_OUTPUT = "reports/minigram-report.html"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pytest_minigram report",
        description="Write the self-contained HTML report from saved run files.")
    p.add_argument("results", nargs="+", metavar="RESULTS.json",
                   help="Run files (or single Result files) to show; stages are merged")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                   help=f"Where to write the HTML page (default {DEFAULT_OUTPUT})")
    p.add_argument("--baseline", metavar="B.json",
                   help="A baseline run file to compare against")
    p.add_argument("--comparison", metavar="C.json",
                   help="A saved comparison (compare's JSON) instead of comparing here")
    return p


def _read(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON ({exc})") from None


def load(path: str) -> Mapping[str, Any]:
    """A run file, validated by storage; a bare Result becomes a one-test run."""
    data = _read(path)
    if isinstance(data, Mapping) and data.get("schema") == RUN_SCHEMA:
        from pytest_minigram.storage import BaselineError, validate_run

        try:
            return validate_run(data, path)
        except BaselineError as exc:
            raise ReportInputError(str(exc)) from None
    return coerce_run(data, path)


def _compare(baseline: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
             source: str) -> Mapping[str, Any]:
    from pytest_minigram.gate import compare_runs

    current = {**runs[-1], "tests": [t for r in runs for t in r.get("tests") or ()]}
    return compare_runs(dict(baseline), current, baseline_source=source).to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        runs = [load(p) for p in args.results]
        baseline = load(args.baseline) if args.baseline else None
        comparison: Any = None
        if args.comparison:
            comparison = _read(args.comparison)
        elif baseline is not None:
            comparison = _compare(baseline, runs, args.baseline)
        out = write_report(args.output, runs, baseline, comparison)
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tests = sum(len(r.get("tests") or ()) for r in runs)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {tests} results)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
