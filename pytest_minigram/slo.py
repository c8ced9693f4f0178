"""k6-style threshold expressions: parse, evaluate, explain.

Grammar: ``[action.]metric op value[unit]``, for example ``p95 < 500ms``,
``feed.p(99.9) < 100ms``, ``error_rate < 1%``, ``apdex > 0.85``, ``rps >= 100/s``.

Values are normalised to the units of ``Result.metric``: seconds for latencies, a fraction
0..1 for rates, requests per second for throughput. As in k6, a bare number for a latency
metric means milliseconds; a bare number for ``error_rate`` is a fraction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pytest_minigram.metrics import ALIASES, METRICS, Kind, valid_names

__all__ = [
    "METRICS",
    "OPS",
    "Outcome",
    "SLOViolation",
    "Threshold",
    "ThresholdError",
    "check",
    "evaluate",
    "explain",
    "parse",
    "parse_all",
]


class MetricResult(Protocol):
    def metric(self, name: str, action: str | None = None) -> float: ...


class ThresholdError(ValueError):
    """A threshold expression is malformed: a usage error, not a test failure."""


class SLOViolation(AssertionError):
    """One or more thresholds failed; the message lists every violated one."""

    def __init__(self, outcomes: list[Outcome], stage: str | None = None) -> None:
        self.outcomes = outcomes
        self.stage = stage
        super().__init__(explain(outcomes, stage))

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]


OPS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=")

# unit -> divisor that turns the written number into the base unit of the metric
_UNITS: dict[Kind, dict[str, float]] = {
    Kind.LATENCY: {"us": 1e6, "µs": 1e6, "μs": 1e6, "ms": 1e3, "s": 1.0, "m": 1 / 60},
    Kind.RATE: {"%": 100.0},
    Kind.SCORE: {"%": 100.0},
    Kind.THROUGHPUT: {"/s": 1.0, "rps": 1.0},
    Kind.COUNT: {},
}
# what a bare number means, and how to show it back
_BARE: dict[Kind, tuple[float, str]] = {
    Kind.LATENCY: (1e3, "ms"),
    Kind.RATE: (1.0, ""),
    Kind.SCORE: (1.0, ""),
    Kind.THROUGHPUT: (1.0, "/s"),
    Kind.COUNT: (1.0, ""),
}
_BARE_MEANING: dict[Kind, str] = {
    Kind.LATENCY: "a bare number means milliseconds",
    Kind.RATE: "a bare number is a fraction 0..1",
    Kind.SCORE: "a bare number is a score 0..1",
    Kind.THROUGHPUT: "a bare number means requests per second",
    Kind.COUNT: "a bare number",
}

_OP_RE = re.compile(r"<=|>=|==|!=|<|>|=(?!=)")
_SUBJECT_RE = re.compile(
    r"(?:(?P<action>[A-Za-z_][\w\-]*)\.)?"
    r"(?P<metric>p\(\s*[^)]*\)|p\d+(?:\.\d+)?|[A-Za-z_]\w*)"
)
_VALUE_RE = re.compile(r"(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>.*)")
_PERCENTILE_RE = re.compile(r"p\(\s*(?P<a>\d+(?:\.\d+)?)\s*\)|p(?P<b>\d+(?:\.\d+)?)")
_SPLIT_RE = re.compile(r"[,;\n]")

_GRAMMAR = "[action.]metric op value[unit], e.g. 'p95 < 500ms' or 'feed.error_rate < 1%'"


def _valid_metrics() -> str:
    return valid_names()


def _units_help(kind: Kind) -> str:
    units = sorted(set(_UNITS[kind]) - {"μs"}, key=list(_UNITS[kind]).index)
    written = f"units {', '.join(units)}" if units else "no unit"
    return f"{written} ({_BARE_MEANING[kind]})"


@dataclass(frozen=True)
class Threshold:
    """One parsed expression. ``value`` is in the base unit of the metric."""

    action: str | None
    metric: str
    op: str
    value: float
    text: str
    unit: str = ""

    @property
    def kind(self) -> Kind:
        return _kind(self.metric)

    @property
    def subject(self) -> str:
        return f"{self.action}.{self.metric}" if self.action else self.metric

    def display(self, value: float) -> str:
        """Format a base-unit value in the unit the user wrote."""
        return _format(value, self.kind, self.unit)

    def compare(self, measured: float) -> bool:
        return _compare(measured, self.op, self.value)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Outcome:
    threshold: Threshold
    measured: float | None
    passed: bool
    note: str = ""

    def describe(self) -> str:
        t = self.threshold
        mark = "pass" if self.passed else "FAIL"
        if self.measured is None:
            detail = self.note or "no value"
        else:
            detail = f"measured {t.display(self.measured)}, limit {t.op} {t.display(t.value)}"
            if self.note:
                detail += f" ({self.note})"
        return f"{mark}  {t.text}: {detail}"


def _kind(metric: str) -> Kind:
    if metric in METRICS:
        return METRICS[metric]
    return Kind.LATENCY  # percentiles


def _percentile_name(text: str, expr: str) -> str:
    m = _PERCENTILE_RE.fullmatch(text)
    if not m:
        raise ThresholdError(
            f"threshold {expr!r}: bad percentile {text!r}; expected pNN, pNN.N or p(NN.N), "
            "e.g. p95, p99.9, p(99.9)"
        )
    q = float(m.group("a") or m.group("b"))
    if not 0.0 <= q <= 100.0:
        raise ThresholdError(f"threshold {expr!r}: percentile {text!r} must be between 0 and 100")
    return f"p{q:g}"


def _parse_metric(name: str, expr: str) -> str:
    lowered = name.lower()
    lowered = ALIASES.get(lowered, lowered)
    if lowered in METRICS:
        return lowered
    if lowered.startswith("p") and (lowered[1:2].isdigit() or lowered[1:2] == "("):
        return _percentile_name(lowered.replace(" ", ""), expr)
    raise ThresholdError(
        f"threshold {expr!r}: unknown metric {name!r}; valid metrics: {_valid_metrics()}"
    )


def parse(expr: str) -> Threshold:
    """Parse one expression; raise ThresholdError saying what was expected."""
    if not isinstance(expr, str):
        raise ThresholdError(f"threshold {expr!r}: expected a string like {_GRAMMAR}")
    text = expr.strip()
    if not text:
        raise ThresholdError(f"empty threshold expression; expected {_GRAMMAR}")
    ops = list(_OP_RE.finditer(text))
    if not ops:
        raise ThresholdError(
            f"threshold {text!r}: no comparison operator; expected one of "
            f"{' '.join(OPS)} in {_GRAMMAR}"
        )
    if len(ops) > 1:
        raise ThresholdError(
            f"threshold {text!r}: more than one comparison operator; expected {_GRAMMAR}"
        )
    op_match = ops[0]
    op = op_match.group()
    if op == "=":
        raise ThresholdError(
            f"threshold {text!r}: unknown operator '='; use one of {' '.join(OPS)}"
        )
    left = text[: op_match.start()].strip()
    right = text[op_match.end() :].strip()
    if not left:
        raise ThresholdError(
            f"threshold {text!r}: missing metric before {op!r}; expected {_GRAMMAR}"
        )
    subject = _SUBJECT_RE.fullmatch(left.replace(" ", "") if "(" in left else left)
    if not subject:
        raise ThresholdError(
            f"threshold {text!r}: cannot read {left!r} as [action.]metric; "
            f"valid metrics: {_valid_metrics()}"
        )
    action = subject.group("action")
    metric = _parse_metric(subject.group("metric"), text)
    kind = _kind(metric)
    value_match = _VALUE_RE.fullmatch(right)
    if not value_match:
        raise ThresholdError(
            f"threshold {text!r}: expected a non-negative number with an optional unit after "
            f"{op!r}, got {right!r}; {metric} takes {_units_help(kind)}"
        )
    number = float(value_match.group("num"))
    unit = value_match.group("unit").strip()
    if unit:
        units = _UNITS[kind]
        if unit not in units:
            raise ThresholdError(
                f"threshold {text!r}: unit {unit!r} is not valid for {metric}; "
                f"expected {_units_help(kind)}"
            )
        value = number / units[unit]
    else:
        divisor, _ = _BARE[kind]
        value = number / divisor
    return Threshold(action=action, metric=metric, op=op, value=value, text=text, unit=unit)


def parse_all(exprs: str | Threshold | Iterable[str | Threshold]) -> list[Threshold]:
    """Parse several expressions at once; a string may hold several separated by , ; or newline.

    Every malformed expression is reported in one ThresholdError.
    """
    items: list[str | Threshold]
    if isinstance(exprs, str | Threshold):
        items = [exprs]
    else:
        items = list(exprs)
    texts: list[str | Threshold] = []
    for item in items:
        if isinstance(item, str):
            texts.extend(part for part in _SPLIT_RE.split(item) if part.strip())
        else:
            texts.append(item)
    parsed: list[Threshold] = []
    errors: list[str] = []
    for item in texts:
        if isinstance(item, Threshold):
            parsed.append(item)
            continue
        try:
            parsed.append(parse(item))
        except ThresholdError as exc:
            errors.append(str(exc))
    if errors:
        if len(errors) == 1:
            raise ThresholdError(errors[0])
        raise ThresholdError(
            f"{len(errors)} malformed thresholds:\n" + "\n".join(f"  {e}" for e in errors)
        )
    return parsed


def _compare(measured: float, op: str, limit: float) -> bool:
    # Tolerate float noise from unit conversion (0.1 s vs 100 ms) at the boundary only.
    equal = math.isclose(measured, limit, rel_tol=1e-9, abs_tol=1e-12)
    if op == "<":
        return measured < limit and not equal
    if op == "<=":
        return measured < limit or equal
    if op == ">":
        return measured > limit and not equal
    if op == ">=":
        return measured > limit or equal
    if op == "==":
        return equal
    if op == "!=":
        return not equal
    raise ThresholdError(f"unknown operator {op!r}; expected one of {' '.join(OPS)}")


def _evaluate_one(result: MetricResult, threshold: Threshold) -> Outcome:
    try:
        measured = float(result.metric(threshold.metric, threshold.action))
    except KeyError as exc:
        if threshold.action:
            note = f"no requests recorded for action {threshold.action!r}"
        else:
            detail = exc.args[0] if exc.args else threshold.metric
            note = f"metric {threshold.metric!r} is not available: {detail}"
        return Outcome(threshold, None, False, note)
    if math.isnan(measured):
        return Outcome(threshold, None, False, "measured value is not a number (no samples?)")
    return Outcome(threshold, measured, threshold.compare(measured))


def evaluate(
    result: MetricResult, exprs: str | Threshold | Iterable[str | Threshold]
) -> list[Outcome]:
    """Evaluate every threshold; malformed expressions raise ThresholdError before any check."""
    return [_evaluate_one(result, t) for t in parse_all(exprs)]


def check(
    result: MetricResult,
    exprs: str | Threshold | Iterable[str | Threshold],
    stage: str | None = None,
) -> list[Outcome]:
    """Evaluate and raise SLOViolation listing every violated threshold; return the outcomes."""
    outcomes = evaluate(result, exprs)
    if any(not o.passed for o in outcomes):
        raise SLOViolation(outcomes, stage)
    return outcomes


def explain(outcomes: Iterable[Outcome], stage: str | None = None) -> str:
    items = list(outcomes)
    failed = [o for o in items if not o.passed]
    where = f" at stage {stage}" if stage is not None else ""
    if failed:
        head = f"SLO violated{where}: {len(failed)} of {len(items)} thresholds failed"
    else:
        head = f"SLO met{where}: all {len(items)} thresholds passed"
    ordered = failed + [o for o in items if o.passed]
    return "\n".join([head, *(f"  {o.describe()}" for o in ordered)])


def _number(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.4g}"


def _format(value: float, kind: Kind, unit: str) -> str:
    if unit:
        shown = value * _UNITS[kind][unit]
        sep = " " if unit == "rps" else ""
        return f"{_number(shown)}{sep}{unit}"
    divisor, bare_unit = _BARE[kind]
    return f"{_number(value * divisor)}{bare_unit}"
