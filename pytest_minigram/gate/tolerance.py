"""Tolerances of the gate: ``p95:+10%``, ``error_rate:+0.5pp``, ``p99:+20ms``."""


from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pytest_minigram.metrics import bad_direction, percentile_of

DEFAULT_METRICS = ("p50", "p95", "p99", "throughput", "error_rate")
VALID_METRICS = "p<q> (e.g. p50, p95, p99.9), mean, min, max, throughput, error_rate"
VALID_FORMS = ("+10% (relative), +0.5pp (percentage points, error_rate only), "
               "+20ms / +0.02s / +500us (absolute, latency metrics only)")
_PERCENTILE = re.compile(r"^p(\d+(?:[._]\d+)?)$")
_LATENCY = ("mean", "min", "max")
_TOLERANCE = re.compile(
    r"^(?P<metric>[a-z_]+|p\d+(?:[._]\d+)?)\s*:\s*(?P<sign>[+-])?\s*"
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>%|pp|ms|us|s)$"
)
_ABS_UNITS = {"ms": 1e-3, "us": 1e-6, "s": 1.0}


def _kind(metric: str) -> str:
    """``latency``, ``throughput`` or ``error_rate``: the metrics the gate can compare."""
    if metric in _LATENCY or (metric.startswith("p") and percentile_of(metric) is not None):
        return "latency"
    if metric in ("throughput", "error_rate"):
        return metric
    raise ValueError(f"unknown metric {metric!r}; valid metrics: {VALID_METRICS}")


def _bad_direction(metric: str) -> int:
    return bad_direction(metric)


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move in its bad direction before the gate may fail."""

    metric: str
    amount: float  # magnitude: 0.10 for 10%, 0.005 for 0.5pp, 0.02 for 20ms
    relative: bool
    direction: int  # +1: an increase is bad; -1: a decrease is bad
    text: str

    def shift(self, baseline: float, current: float) -> float | None:
        """The move in the bad direction, in this tolerance's unit (None: undefined)."""
        if self.relative:
            if baseline == 0 or not math.isfinite(baseline):
                return math.inf if current * self.direction > 0 else None
            return (current - baseline) / abs(baseline) * self.direction
        return (current - baseline) * self.direction

    def exceeded(self, baseline: float, current: float) -> bool:
        moved = self.shift(baseline, current)
        return moved is not None and moved > self.amount

    def format_amount(self, amount: float) -> str:
        """An amount in this tolerance's unit, signed in its bad direction: ``+7.2%``."""
        sign = "+" if self.direction > 0 else "-"
        if self.relative:
            return f"{sign}{amount * 100:.1f}%"
        if _kind(self.metric) == "error_rate":
            return f"{sign}{amount * 100:.2f}pp"
        return f"{sign}{amount * 1000:.1f}ms"

    def __str__(self) -> str:
        return self.text


def parse_tolerance(text: str) -> Tolerance:
    expr = text.strip()
    m = _TOLERANCE.match(expr)
    if not m:
        raise ValueError(f"invalid tolerance {expr!r}: expected METRIC:CHANGE, e.g. p95:+10%, "
                         f"throughput:-10%, error_rate:+0.5pp; valid metrics: {VALID_METRICS}; "
                         f"valid changes: {VALID_FORMS}")
    metric, sign, unit = m.group("metric"), m.group("sign"), m.group("unit")
    try:
        kind = _kind(metric)
    except ValueError as exc:
        raise ValueError(f"invalid tolerance {expr!r}: {exc}") from None
    bad = _bad_direction(metric)
    direction = bad if sign is None else (1 if sign == "+" else -1)
    if direction != bad:
        word = "an increase" if bad > 0 else "a decrease"
        raise ValueError(f"invalid tolerance {expr!r}: for {metric} {word} is the regression, "
                         f"write {metric}:{'+' if bad > 0 else '-'}{m.group('num')}{unit}")
    number = float(m.group("num"))
    if unit == "%":
        return Tolerance(metric, number / 100, True, direction, expr)
    if unit == "pp":
        if kind != "error_rate":
            raise ValueError(f"invalid tolerance {expr!r}: 'pp' (percentage points) applies to "
                             f"error_rate only; use % for {metric}")
        return Tolerance(metric, number / 100, False, direction, expr)
    if kind != "latency":
        raise ValueError(f"invalid tolerance {expr!r}: {unit!r} is a time; use % for {metric}")
    return Tolerance(metric, number * _ABS_UNITS[unit], False, direction, expr)


def parse_tolerances(spec: str | Iterable[str] | None) -> list[Tolerance]:
    """``"p95:+10%,throughput:-10%"`` (or a list of such strings) -> tolerances."""
    if spec is None:
        return []
    parts = spec.split(",") if isinstance(spec, str) else [
        piece for item in spec for piece in item.split(",")
    ]
    out: dict[str, Tolerance] = {}
    for part in parts:
        if part.strip():
            tol = parse_tolerance(part)
            out[tol.metric] = tol
    return list(out.values())
