"""The record of one perf test: created once by the conductor, read by every output.

The terminal summary, the JUnit properties, the results file, the stored run, the comparison
and the report all read `PerfRecord`. It crosses a process boundary only as its results-file
entry (``to_entry``/``from_entry``): from an xdist worker to the controller, and into files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_minigram.load.result import Result

Kind = Literal["load", "stress", "breaking", "diagnostic"]
KINDS: tuple[str, ...] = ("load", "stress", "breaking", "diagnostic")


@dataclass
class SloOutcome:
    """One threshold as judged: ``p95 < 500ms`` measured 0.212 s, passed."""

    threshold: str
    measured: float | None
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "measured": self.measured, "passed": self.passed,
                "note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SloOutcome:
        return cls(str(d["threshold"]), d.get("measured"), bool(d["passed"]),
                   str(d.get("note") or ""))


@dataclass
class PerfRecord:
    """One load of one perf test: its merged result, its thresholds, its gate, its verdict.

    ``result`` covers the whole load (every worker's share and every round); its workload is
    the whole workload, not one worker's share. ``duet_baseline`` is the baseline measured side
    by side, when there is one. ``verdict`` is set once, when the test's report is made.
    """

    test: str
    stage: str | None
    kind: str
    result: Result
    slo: list[SloOutcome] = field(default_factory=list)
    comparison: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = ""
    duet_baseline: Result | None = None
    breaking_point: dict[str, Any] | None = None
    server: dict[str, Any] | None = None  # CPU seconds the server used during the load
    stopped: bool = False  # ended early from the live page: a partial result, never a pass

    @property
    def totals(self) -> dict[str, Any]:
        """The whole-load figures (``throughput``, ``error_rate``, ``p95``...)."""
        total: dict[str, Any] = self.result.to_dict()["total"]
        return total

    def to_entry(self) -> dict[str, Any]:
        """The results-file entry (docs/results-file.md)."""
        result = self.result.to_dict()
        if self.server is not None:
            result["server"] = self.server
        entry: dict[str, Any] = {
            "test": self.test, "stage": self.stage, "kind": self.kind, "result": result,
            "slo": [o.to_dict() for o in self.slo], "verdict": self.verdict,
            "comparison": self.comparison}
        if self.breaking_point is not None:
            entry["breaking_point"] = self.breaking_point
        if self.stopped:
            entry["stopped"] = True
        if self.duet_baseline is not None:
            entry["duet_baseline"] = self.duet_baseline.to_dict()
        return entry

    @classmethod
    def from_entry(cls, d: Mapping[str, Any]) -> PerfRecord:
        base = d.get("duet_baseline")
        return cls(
            test=str(d["test"]), stage=d.get("stage"), kind=str(d.get("kind") or "load"),
            result=Result.from_dict(d["result"]),
            slo=[SloOutcome.from_dict(o) for o in d.get("slo") or []],
            comparison=list(d.get("comparison") or []), verdict=str(d.get("verdict") or ""),
            duet_baseline=Result.from_dict(base) if base else None,
            breaking_point=d.get("breaking_point"), server=d["result"].get("server"),
            stopped=bool(d.get("stopped", False)))


def unique_entries(records: Iterable[PerfRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Results-file entries: a test's second load in the same stage becomes ``test#2``."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for rec in records:
        entry = rec.to_entry() if isinstance(rec, PerfRecord) else dict(rec)
        entry["stage"] = str(entry.get("stage") or "-")
        key = (entry["test"], entry["stage"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            entry["test"] = f"{entry['test']}#{seen[key]}"
        out.append(entry)
    return out
