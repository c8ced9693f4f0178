"""What a finished perf session leaves behind.

One run document (see docs/results-file.md) feeds every output: the results file, the stored
run, the pytest-benchmark JSON, the HTML report and the GitHub step summary. Each output is
optional; ``write_outputs`` returns one line per file written, for the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_minigram.benchmark_json import write_benchmark_json
from pytest_minigram.compare import ComparisonReport, format_markdown
from pytest_minigram.storage import open_storage, save_run
from pytest_minigram.summary import markdown_table


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


def write_outputs(run: dict[str, Any], outputs: Outputs, *,
                  baseline: Mapping[str, Any] | None = None,
                  comparison: ComparisonReport | None = None) -> list[str]:
    written: list[str] = []
    if outputs.results is not None:
        written.append(f"results file: {save_run(run, outputs.results)}")
    if (outputs.save or outputs.autosave) and outputs.storage:
        storage = open_storage(outputs.storage)
        try:
            written.append(f"saved run: {storage.save(run, outputs.save)}")
        finally:
            storage.close()
    if outputs.benchmark_json is not None:
        path = write_benchmark_json(run, outputs.benchmark_json)
        written.append(f"pytest-benchmark JSON: {path}")
    if outputs.report is not None:
        from pytest_minigram.report import write_report

        path = write_report(outputs.report, [run], baseline=baseline,
                            comparison=comparison.to_dict() if comparison else None)
        written.append(f"HTML report: {path}")
    if outputs.step_summary is not None:
        with outputs.step_summary.open("a", encoding="utf-8") as f:
            f.write(step_summary(run, comparison))
        written.append(f"step summary: {outputs.step_summary}")
    return written


def unique_tests(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Results-file entries: a test's second load in the same stage becomes ``test#2``."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for rec in records:
        entry = dict(rec)
        entry["stage"] = str(entry.get("stage") or "-")
        key = (entry["test"], entry["stage"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            entry["test"] = f"{entry['test']}#{seen[key]}"
        out.append(entry)
    return out
