"""What a finished perf session leaves behind.

One run document (see docs/results-file.md) feeds every output: the results file, the stored
run, the pytest-benchmark JSON, the HTML report and the GitHub step summary. Each output is
optional and written on its own: a broken storage does not cost the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.benchmark_json import write_benchmark_json
from pytest_minigram.environment import collect_environment
from pytest_minigram.gate import ComparisonReport, format_markdown, format_table
from pytest_minigram.plugin.baseline import Baseline
from pytest_minigram.plugin.options import Settings
from pytest_minigram.plugin.summary import markdown_table, table
from pytest_minigram.plugin.verdicts import Verdicts
from pytest_minigram.record import unique_entries
from pytest_minigram.redact import redact_text
from pytest_minigram.storage import new_run, open_storage, save_run


@dataclass(frozen=True)
class Outputs:
    """Where the run goes; ``None`` (or False) leaves that output out."""

    results: Path | None = None
    storage: str | None = None
    save: str | None = None
    autosave: bool = False
    benchmark_json: Path | None = None
    report: Path | None = None
    step_summary: Path | None = None

    @classmethod
    def from_env(cls, **kwargs: Any) -> Outputs:
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        return cls(step_summary=Path(summary) if summary else None, **kwargs)


def step_summary(run: Mapping[str, Any], comparison: ComparisonReport | None) -> str:
    """The Markdown that goes to ``$GITHUB_STEP_SUMMARY``: verdicts, then the comparison."""
    tests = run.get("tests") or []
    failed = [t for t in tests if t.get("verdict") != "passed"]
    head = (f"### pytest-minigram: {len(tests)} perf test(s), "
            + (f"{len(failed)} not passed" if failed else "all passed"))
    commit = ((run.get("environment") or {}).get("git") or {}).get("commit")
    lines = [head, ""]
    if commit:
        lines += [f"Commit `{str(commit)[:12]}`", ""]
    lines += markdown_table(tests)
    if comparison is not None:
        lines += ["", f"### Against the baseline ({comparison.baseline_source})", "",
                  format_markdown(comparison).rstrip()]
    return "\n".join(lines) + "\n"


@dataclass
class Written:
    """What ``write_outputs`` did: a line per file written, a line per output that failed."""

    lines: list[str]
    failures: list[str]


def write_outputs(run: dict[str, Any], outputs: Outputs, *,
                  baseline: Mapping[str, Any] | None = None,
                  comparison: ComparisonReport | None = None) -> Written:
    """Write each output on its own: one that fails is reported, the others still written."""
    done = Written([], [])

    def attempt(what: str, write: Callable[[], str]) -> None:
        try:
            done.lines.append(redact_text(f"{what}: {write()}"))
        except Exception as exc:  # noqa: BLE001 - any failure of one output is reported
            done.failures.append(
                redact_text(f"{what} not written: {type(exc).__name__}: {exc}"))

    if outputs.results is not None:
        results = outputs.results
        attempt("results file", lambda: str(save_run(run, results)))
    if (outputs.save or outputs.autosave) and outputs.storage:
        location = outputs.storage

        def save() -> str:
            storage = open_storage(location)
            try:
                return storage.save(run, outputs.save)
            finally:
                storage.close()

        attempt("saved run", save)
    if outputs.benchmark_json is not None:
        bench = outputs.benchmark_json
        attempt("pytest-benchmark JSON", lambda: str(write_benchmark_json(run, bench)))
    if outputs.report is not None:
        report = outputs.report

        def html() -> str:
            from pytest_minigram.report import write_report

            return str(write_report(report, [run], baseline=baseline,
                                    comparison=comparison.to_dict() if comparison else None))

        attempt("HTML report", html)
    if outputs.step_summary is not None:
        summary_path = outputs.step_summary

        def summary() -> str:
            with summary_path.open("a", encoding="utf-8") as f:
                f.write(step_summary(run, comparison))
            return str(summary_path)

        attempt("step summary", summary)
    return done


class SessionOutputs:
    """At the end of the session, on the controller: the run document, the comparison, every
    output, then the terminal summary. A failed output fails the session, naming it."""

    def __init__(self, config: pytest.Config, settings: Settings, baseline: Baseline,
                 verdicts: Verdicts, describe: Callable[[], dict[str, Any]]) -> None:
        self.config = config
        self.settings = settings
        self.baseline = baseline
        self.verdicts = verdicts
        self.describe = describe  # what the harnesses started, for the environment
        self.run: dict[str, Any] | None = None
        self.comparison: ComparisonReport | None = None
        self.written = Written([], [])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        records = self.verdicts.records
        if not records:
            return
        try:
            environment = collect_environment(self.describe())
        except Exception as exc:  # noqa: BLE001 - a broken harness hook costs the environment only
            environment = collect_environment({})
            self.written.failures.append(redact_text(
                f"environment incomplete: {type(exc).__name__}: {exc}"))
        self.run = new_run(environment, unique_entries(records))
        try:
            self.comparison = self.baseline.compare_session(self.run)
        except Exception as exc:  # noqa: BLE001 - the per-test verdicts stand; say what is missing
            self.written.failures.append(redact_text(
                f"session comparison not made: {type(exc).__name__}: {exc}"))
        s = self.settings
        outputs = Outputs.from_env(results=s.results, storage=s.storage, save=s.save,
                                   autosave=s.autosave, benchmark_json=s.benchmark_json,
                                   report=s.report)
        failures = self.written.failures
        self.written = write_outputs(self.run, outputs, baseline=self.baseline.run,
                                     comparison=self.comparison)
        self.written.failures[:0] = failures
        if self.written.failures and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.config.hook.pytest_minigram_run_finished(config=self.config, run=self.run)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.run is None:
            return
        tests = self.run["tests"]
        terminalreporter.write_sep("=", "minigram perf summary")
        for line in table(tests):
            terminalreporter.write_line(line)
        if self.comparison is not None:
            terminalreporter.write_sep("-", "against the baseline "
                                       f"{self.comparison.baseline_source}")
            for line in format_table(self.comparison).splitlines():
                terminalreporter.write_line(line)
        for line in self.written.lines:
            terminalreporter.write_line(f"minigram: wrote {line}")
        for line in self.written.failures:
            terminalreporter.write_line(f"minigram: ERROR: {line}", red=True, bold=True)
        if any((t.get("result") or {}).get("generator", {}).get("saturated") for t in tests):
            terminalreporter.write_line(
                "warning: the load generator was saturated (>90% CPU) in some tests; their "
                "latency figures are not trustworthy. Use fewer users or more xdist workers.",
                yellow=True)
