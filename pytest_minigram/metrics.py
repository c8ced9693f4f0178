"""The metric vocabulary: each figure's name, kind, unit, bad direction and formatting.

Thresholds (``slo``), the regression gate (``gate``), the results (``load.result``), the
terminal summary and the report all name and show metrics through this module.

Names: ``count``, ``errors``, ``dropped_iterations``, ``throughput`` (alias ``rps``),
``error_rate``, ``apdex``, ``min``, ``mean`` (``avg``), ``max``, and percentiles ``p95``,
``p99.9``, ``p(99.9)`` (``med`` = ``p50``). Latencies are in seconds, rates are fractions.
"""

from __future__ import annotations

import math
import re
from enum import Enum

__all__ = ["ALIASES", "METRICS", "Kind", "bad_direction", "canonical", "fmt_ms", "fmt_value",
           "human_seconds", "kind_of", "ms_number", "percentile_of", "valid_names"]


class Kind(Enum):
    LATENCY = "latency"
    RATE = "rate"  # a fraction 0..1, such as error_rate
    SCORE = "score"  # apdex, 0..1
    THROUGHPUT = "throughput"  # per second
    COUNT = "count"


METRICS: dict[str, Kind] = {
    "count": Kind.COUNT,
    "errors": Kind.COUNT,
    "dropped_iterations": Kind.COUNT,
    "throughput": Kind.THROUGHPUT,
    "error_rate": Kind.RATE,
    "apdex": Kind.SCORE,
    "min": Kind.LATENCY,
    "mean": Kind.LATENCY,
    "max": Kind.LATENCY,
}
ALIASES: dict[str, str] = {"rps": "throughput", "avg": "mean", "med": "p50"}
_PERCENTILE = re.compile(r"p\(\s*(?P<a>\d+(?:\.\d+)?)\s*\)|p(?P<b>\d+(?:[._]\d+)?)")


def percentile_of(name: str) -> float | None:
    """95.0 for ``p95``, 99.9 for ``p99.9``, ``p99_9`` or ``p(99.9)``; None for other names."""
    m = _PERCENTILE.fullmatch(name)
    if not m:
        return None
    q = float((m.group("a") or m.group("b")).replace("_", "."))
    return q if 0 <= q <= 100 else None


def canonical(name: str) -> str:
    """The metric's own name (aliases resolved, ``p(99.9)`` -> ``p99.9``); KeyError if unknown."""
    lowered = ALIASES.get(name.lower(), name.lower())
    if lowered in METRICS:
        return lowered
    q = percentile_of(lowered)
    if q is None:
        raise KeyError(f"unknown metric {name!r}; valid metrics: {valid_names()}")
    return f"p{q:g}"


def kind_of(name: str) -> Kind:
    name = canonical(name)
    return METRICS.get(name, Kind.LATENCY)


def bad_direction(name: str) -> int:
    """+1 when a rise is bad (latency, errors), -1 when a fall is (throughput, apdex)."""
    return -1 if kind_of(name) in (Kind.THROUGHPUT, Kind.SCORE) else 1


def valid_names() -> str:
    return ", ".join([*METRICS, *ALIASES, "pNN", "pNN.N", "p(NN.N)"])


def fmt_ms(seconds: float | None) -> str:
    """A latency for a terminal column: ``212ms``, ``4.9ms``, ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    ms = seconds * 1000.0
    return f"{ms:.0f}ms" if ms >= 100 else f"{ms:.1f}ms"


def ms_number(seconds: float | None) -> str:
    """A latency in milliseconds without its unit, for columns headed ``ms``: ``4.9``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1000:.1f}"


def fmt_value(name: str, v: float | None) -> str:
    """A metric's value, compact, for tables: ``12.3ms``, ``1.25s``, ``61.0/s``, ``0.25%``."""
    if v is None or not math.isfinite(v):
        return "n/a"
    kind = kind_of(name)
    if kind is Kind.THROUGHPUT:
        return f"{v:.1f}/s"
    if kind is Kind.RATE:
        return f"{v * 100:.2f}%"
    if kind is Kind.SCORE:
        return f"{v:.2f}"
    if kind is Kind.COUNT:
        return f"{v:g}"
    return f"{v * 1000:.1f}ms" if v < 10 else f"{v:.2f}s"


def human_seconds(v: float | None) -> str:
    """A latency for people to read: ``1.24 s``, ``12.3 ms``, ``0.42 ms``, ``80 µs``."""
    if v is None:
        return "—"
    v = float(v)
    if v >= 1:
        return f"{v:.2f} s"
    ms = v * 1e3
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 0.1:
        return f"{ms:.2f} ms"
    return f"{v * 1e6:.0f} µs"
