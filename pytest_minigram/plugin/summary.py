"""The end-of-session table of perf tests, from the run document's entries: text and Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_minigram.metrics import fmt_ms

COLUMNS = ("test", "stage", "load", "req/s", "errors", "p50", "p95", "p99", "apdex", "verdict")


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


def row(entry: Mapping[str, Any]) -> tuple[str, ...]:
    result = entry.get("result") or {}
    total = result.get("total", {})
    short = str(entry["test"]).split("::", 1)[-1]
    verdict = str(entry.get("verdict") or "error").upper()
    if result.get("generator", {}).get("saturated"):
        verdict += " (generator saturated)"
    apdex = total.get("apdex_score")
    return (
        short,
        entry.get("stage") or "-",
        describe_load(result.get("workload", {})) + _rounds(result),
        f"{total.get('throughput', 0.0):.1f}",
        f"{100.0 * total.get('error_rate', 0.0):.2f}%",
        fmt_ms(total.get("p50")),
        fmt_ms(total.get("p95")),
        fmt_ms(total.get("p99")),
        f"{apdex:.2f}" if apdex is not None else "-",
        verdict,
    )


def table(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [COLUMNS] + [row(e) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, r in enumerate(rows):
        cells = [c.ljust(w) if i in (0, 2, 9) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def markdown_table(tests: Sequence[Mapping[str, Any]]) -> list[str]:
    """The same table as Markdown, from results-file entries (for $GITHUB_STEP_SUMMARY)."""
    rows = [row(t) for t in tests if t.get("result")]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines
