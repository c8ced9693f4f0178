"""The end-of-session table of perf tests, as plain text lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("test", "stage", "load", "req/s", "errors", "p50", "p95", "p99", "apdex", "verdict")


@dataclass
class PerfRecord:
    """One perf test's merged result as the controller keeps it (plain data only)."""

    nodeid: str
    stage: str | None
    result: dict[str, Any]
    slo: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "passed"
    kind: str = "load"
    comparison: list[dict[str, Any]] = field(default_factory=list)
    breaking_point: dict[str, Any] | None = None
    duet_baseline: dict[str, Any] | None = None  # --minigram-duet: the baseline's result

    @classmethod
    def from_dict(cls, rec: dict[str, Any], verdict: str) -> PerfRecord:
        return cls(nodeid=rec["test"], stage=rec.get("stage"), result=rec["result"],
                   slo=rec.get("slo", []), verdict=rec.get("verdict", verdict),
                   kind=rec.get("kind", "load"), comparison=rec.get("comparison", []),
                   breaking_point=rec.get("breaking_point"),
                   duet_baseline=rec.get("duet_baseline"))

    def to_dict(self) -> dict[str, Any]:
        out = {"test": self.nodeid, "stage": self.stage, "kind": self.kind,
               "result": self.result, "slo": self.slo, "verdict": self.verdict,
               "comparison": self.comparison}
        if self.breaking_point is not None:
            out["breaking_point"] = self.breaking_point
        if self.duet_baseline is not None:
            out["duet_baseline"] = self.duet_baseline
        return out


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000.0
    return f"{ms:.0f}ms" if ms >= 100 else f"{ms:.1f}ms"


def describe_load(workload: dict[str, Any]) -> str:
    model = workload.get("model")
    dur = workload.get("duration")
    tail = f" {dur:g}s" if dur else ""
    if model == "closed":
        its = workload.get("iterations")
        tail = f" x{its}" if its and not dur else tail
        return f"{workload.get('users')} users{tail}"
    if model == "open":
        return f"{workload.get('rate'):g}/s{tail}"
    if model == "ramping":
        rates = [s[0] for s in workload.get("stages") or []]
        return f"ramp to {max(rates):g}/s" if rates else "ramping"
    return str(model)


def _rounds(result: dict[str, Any]) -> str:
    n = len(result.get("rounds") or ())
    return f" x{n}" if n > 1 else ""


def row(rec: PerfRecord) -> tuple[str, ...]:
    total = rec.result.get("total", {})
    short = rec.nodeid.split("::", 1)[-1]
    verdict = rec.verdict.upper()
    if rec.result.get("generator", {}).get("saturated"):
        verdict += " (generator saturated)"
    apdex = total.get("apdex_score")
    return (
        short,
        rec.stage or "-",
        describe_load(rec.result.get("workload", {})) + _rounds(rec.result),
        f"{total.get('throughput', 0.0):.1f}",
        f"{100.0 * total.get('error_rate', 0.0):.2f}%",
        fmt_ms(total.get("p50")),
        fmt_ms(total.get("p95")),
        fmt_ms(total.get("p99")),
        f"{apdex:.2f}" if apdex is not None else "-",
        verdict,
    )


def table(records: Sequence[PerfRecord]) -> list[str]:
    rows = [COLUMNS] + [row(r) for r in records]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, r in enumerate(rows):
        cells = [c.ljust(w) if i in (0, 2, 9) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def markdown_table(tests: Sequence[dict[str, Any]]) -> list[str]:
    """The same table as Markdown, from results-file entries (for $GITHUB_STEP_SUMMARY)."""
    recs = [PerfRecord.from_dict(t, t.get("verdict", "error")) for t in tests if t.get("result")]
    rows = [row(r) for r in recs]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines
