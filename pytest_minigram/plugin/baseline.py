"""The baseline a session gates on: the tolerances, a saved run, or one measured side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.gate import (
    ComparisonReport,
    Tolerance,
    compare_runs,
    parse_tolerances,
)
from pytest_minigram.plugin.options import Settings
from pytest_minigram.record import PerfRecord
from pytest_minigram.redact import redact_text, redact_url
from pytest_minigram.storage import (
    BaselineError,
    NoSavedRun,
    history,
    load_run,
    new_run,
    open_storage,
    pooled_baseline,
)

DUET_SOURCE = "measured side by side"


class Baseline:
    """Loaded once at configure time; a broken baseline is a usage error before any test runs."""

    def __init__(self, settings: Settings) -> None:
        self.warn_only = settings.compare_warn
        self.tolerances: list[Tolerance] = []
        self.run: dict[str, Any] | None = None
        self.source = ""
        self.missing = ""
        if settings.compare_fail:
            try:
                self.tolerances = parse_tolerances(settings.compare_fail)
            except ValueError as exc:
                raise pytest.UsageError(
                    f"--minigram-compare-fail (ini: minigram_compare_fail): {exc}") from None
        # --minigram-compare-fail alone gates on the latest saved run, or on a baseline
        # measured side by side (minigram_baseline_target)
        ref = settings.compare or ("latest" if settings.compare_fail else None)
        if settings.compare_history > 1 and (ref is None or ref == "latest" or ref.isdigit()
                                             or ref.endswith(".json")):
            raise pytest.UsageError(
                "--minigram-compare-history (ini: minigram_compare_history): pools the runs "
                "saved under one name; give that name with --minigram-compare=NAME")
        if ref is None:
            return
        try:
            if Path(ref).suffix == ".json" or Path(ref).is_file():
                self.run, self.source = load_run(ref), str(ref)
            else:
                storage = open_storage(settings.storage)
                try:
                    if settings.compare_history > 1 and not ref.isdigit() and ref != "latest":
                        runs = history(storage, ref, settings.compare_history)
                        self.run = pooled_baseline(runs)
                        pooled = f", the last {len(runs)} runs pooled" if len(runs) > 1 else ""
                    else:
                        self.run, pooled = storage.load(ref), ""
                finally:
                    storage.close()
                self.source = f"{ref} in {redact_url(settings.storage)}{pooled}"
        except BaselineError as exc:
            if settings.compare is None and isinstance(exc, NoSavedRun):
                # Nothing saved yet, but a minigram_baseline_target fixture may still measure
                # a baseline side by side: a perf test that gets neither fails (see below).
                self.missing = redact_text(str(exc))
                return
            raise pytest.UsageError(f"--minigram-compare: {redact_text(str(exc))}") from None

    def why_none(self, record: PerfRecord) -> str | None:
        """Why a gated perf test has nothing to be compared with; None when it has."""
        if (not self.tolerances or record.duet_baseline is not None or self.run is not None
                or record.kind == "breaking"):
            return None  # a breaking-point search is gated against saved runs only
        why = self.missing or (
            "this test measured none side by side (no minigram_baseline_target) and no saved "
            "run was given (--minigram-compare)")
        return (f"{why}; save one (--minigram-save) or measure one side by side "
                "(--minigram-duet, or a minigram_baseline_target fixture)")

    def source_of(self, record: PerfRecord) -> str:
        if record.duet_baseline is not None:
            return f"{DUET_SOURCE} at {record.duet_baseline.labels.get('target', '?')}"
        return self.source

    def judge(self, record: PerfRecord, entry: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Set the record's comparison; return its regressions and what it cannot judge.

        ``entry`` is the record's results-file entry, numbered among the test's loads
        (``test#2`` for its second load), as the saved baseline numbered them."""
        if record.duet_baseline is not None:
            baseline = duet_baseline_run([entry])
        elif self.run is not None:
            baseline = self.run
        else:
            return [], []
        report = compare_runs(baseline, new_run({}, [entry]), self.tolerances,
                              baseline_source=self.source_of(record))
        comp = report.find(entry["test"], entry["stage"])
        if comp is None:
            why = next((n for t, st, n in report.skipped
                        if (t, st) == (entry["test"], entry["stage"])), "not compared")
            return [], ([f"{entry['test']} (stage {entry['stage']}): {why}"]
                        if self.tolerances else [])
        record.comparison = report.to_dict()["tests"][0]["changes"]
        unjudged = [f"{c.metric} ({c.tolerance}): {c.cannot_judge}" for c in comp.unjudged]
        return [f"{c.metric}: {c.baseline:.6g} -> {c.current:.6g} "
                f"({'n/a' if c.change is None else f'{c.change:+.1%}'}; floor of the "
                f"per-second windows {_pct(c.floor_change)}, p={c.p_value:.3g}), "
                f"beyond {c.tolerance}" for c in comp.regressions], unjudged

    def compare_session(self, run: dict[str, Any]) -> ComparisonReport | None:
        """The whole session against its baselines, for the terminal table and the report.

        A test measured side by side is compared with its own baseline, every other test
        with the saved run: a session that mixes them shows both, not only the duets."""
        duet = [t for t in run["tests"] if t.get("duet_baseline") is not None]
        rest = [t for t in run["tests"] if t.get("duet_baseline") is None]
        reports = []
        if duet:
            reports.append(compare_runs(
                {**duet_baseline_run(duet), "environment": run["environment"]},
                {**run, "tests": duet}, self.tolerances, baseline_source=DUET_SOURCE))
        if self.run is not None and (rest or not duet):
            reports.append(compare_runs(self.run, {**run, "tests": rest}, self.tolerances,
                                        baseline_source=self.source))
        if not reports:
            return None
        if len(reports) == 1:
            return reports[0]
        return ComparisonReport(
            f"{reports[0].baseline_source} and {reports[1].baseline_source}",
            [c for r in reports for c in r.comparisons],
            [s for r in reports for s in r.skipped],
            [w for r in reports for w in r.warnings])


def duet_baseline_run(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run document of the baselines measured side by side with ``entries``."""
    return new_run({}, [{**e, "result": e["duet_baseline"], "slo": [], "comparison": [],
                         "duet_baseline": None} for e in entries])


def _pct(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1%}"
