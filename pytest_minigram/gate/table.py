"""The comparison as a plain-text table (terminal) and as Markdown (step summary)."""


from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_minigram.gate.compare import Change, ComparisonReport, TestComparison
from pytest_minigram.gate.tolerance import _kind, parse_tolerance
from pytest_minigram.metrics import fmt_value

# --- presentation ---

def _value(metric: str, v: float) -> str:
    return fmt_value(metric, v)


def _change(ch: Change) -> str:
    if _kind(ch.metric) == "error_rate":
        return f"{ch.delta * 100:+.2f}pp"
    if ch.change is None:
        return "n/a" if ch.delta == 0 or not math.isfinite(ch.delta) else "new"
    return f"{ch.change * 100:+.1f}%"


def _floor(ch: Change) -> str:
    if ch.floor_baseline is None or ch.floor_current is None:
        return "n/a"
    if _kind(ch.metric) == "error_rate":
        return f"{(ch.floor_current - ch.floor_baseline) * 100:+.2f}pp"
    return "n/a" if ch.floor_change is None else f"{ch.floor_change * 100:+.1f}%"


def _significance(ch: Change) -> str:
    if ch.p_value is None:
        return f"n/a ({min(ch.n_baseline, ch.n_current)} windows)"
    return f"{'yes' if ch.significant else 'no'} (p={ch.p_value:.3g})"


def _status(ch: Change) -> str:
    if ch.regression:
        return f"REGRESSION ({ch.tolerance})"
    beyond = ch.beyond_tolerance or ch.note.startswith("beyond tolerance")
    if ch.cannot_judge:
        return (f"beyond {ch.tolerance}, not confirmed: CANNOT JUDGE" if beyond
                else f"CANNOT JUDGE ({ch.tolerance})")
    if beyond:
        return f"beyond {ch.tolerance}, not confirmed"
    return "ok" if ch.tolerance else ""


def can_see(ch: Change) -> str:
    """The smallest change the comparison would detect (90 % power), in the tolerance's unit."""
    if ch.detectable is None:
        return "n/a"
    if ch.tolerance is not None:
        return parse_tolerance(ch.tolerance).format_amount(ch.detectable)
    if _kind(ch.metric) == "error_rate":
        return f"±{ch.detectable * 100:.2f}pp"
    return f"±{ch.detectable * 100:.1f}%"


def _rows(changes: Sequence[Change]) -> list[list[str]]:
    return [[c.metric, _value(c.metric, c.baseline), _value(c.metric, c.current), _change(c),
             _floor(c), _significance(c), can_see(c), _status(c)] for c in changes]


_HEADER = ["metric", "baseline", "current", "change", "floor", "significant", "can see",
           "gate"]


def format_table(report: ComparisonReport | Sequence[Change]) -> str:
    """A plain-text table per test, with the warnings and skipped tests."""
    if not isinstance(report, ComparisonReport):
        report = ComparisonReport("baseline", [TestComparison("", "", list(report))], [], [])
    lines = [f"WARNING: {w}" for w in report.warnings]
    for comp in report.comparisons:
        if comp.test:
            lines.append(f"{comp.test} (stage {comp.stage})")
        rows = [_HEADER, *_rows(comp.changes)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
        for r in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
                         .rstrip())
        lines += [f"  note: {n}" for n in comp.notes]
        lines += [f"  note: {c.metric}: {c.note}" for c in comp.changes
                  if c.note and not c.cannot_judge]
        lines += [f"  CANNOT JUDGE {c.metric}: {c.cannot_judge}" for c in comp.unjudged]
    lines += [f"{t} (stage {s}): skipped, {why}" for t, s, why in report.skipped]
    return "\n".join(lines)


def format_markdown(report: ComparisonReport) -> str:
    """The same content as :func:`format_table`, as Markdown (for $GITHUB_STEP_SUMMARY)."""
    lines = [f"> **Warning:** {w}" for w in report.warnings]
    for comp in report.comparisons:
        lines += ["", f"#### `{comp.test}` (stage {comp.stage})", "",
                  "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in _rows(comp.changes)]
        lines += [f"- {n}" for n in comp.notes]
        lines += [f"- **cannot judge {c.metric}:** {c.cannot_judge}" for c in comp.unjudged]
    lines += [f"- `{t}` (stage {s}): skipped, {why}" for t, s, why in report.skipped]
    return "\n".join(lines).lstrip("\n") + "\n"
