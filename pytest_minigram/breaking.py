"""Breaking-point search: the highest load a target still serves within its SLOs.

`find_breaking_point` knows nothing of pytest, HTTP or Minigram. It calls ``probe(load)``,
which runs one short step at that load (users or arrival rate) and answers
``(passed, summary)``. The search

1. ramps geometrically from ``start`` (``start``, ``start*growth``, ...; the last step is
   ``limit``) until a step fails or ``limit`` passes;
2. then bisects between the last passing and the first failing load until the bracket is
   narrower than ``resolution`` relative to its low end, (high - low) / low <= resolution.

The answer is the highest passing load, with the bracket ``[low, high)`` as its uncertainty:
the true breaking point lies between ``low`` (passed) and ``high`` (failed). A noisy probe can
pass above a failure; the search never revisits a load, so it reports the bracket it found
and each step it ran, and the caller can see the noise in ``steps``.

Users are whole numbers and rates are rounded to hundredths: the bisection also stops when no
such value lies strictly between low and high.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Metric = Literal["users", "rate"]
Probe = Callable[[float], tuple[bool, dict[str, Any]]]

__all__ = ["BreakingPoint", "Step", "find_breaking_point"]


@dataclass
class Step:
    """One probe: the load, whether it met the SLOs, and the probe's summary."""

    load: float
    passed: bool
    phase: Literal["ramp", "bisect"]
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"load": self.load, "passed": self.passed, "phase": self.phase,
                "summary": dict(self.summary), "seconds": round(self.seconds, 3)}


@dataclass
class BreakingPoint:
    """The result of a search.

    ``value`` is the highest load that passed (None when even ``start`` failed); ``low`` and
    ``high`` bracket the breaking point (``high`` is None when nothing up to ``limit`` failed,
    so the target's breaking point is above ``limit``).
    """

    metric: Metric
    value: float | None
    low: float | None
    high: float | None
    limit: float
    resolution: float
    steps: list[Step] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """True when the search bracketed the breaking point (something passed, then failed)."""
        return self.low is not None and self.high is not None

    @property
    def uncertainty(self) -> float | None:
        """The bracket's width relative to ``low``, or None when there is no bracket."""
        if not self.found or not self.low:
            return None
        assert self.high is not None and self.low is not None
        return (self.high - self.low) / self.low

    def to_dict(self) -> dict[str, Any]:
        return {self.metric: self.value, "metric": self.metric, "value": self.value,
                "low": self.low, "high": self.high, "limit": self.limit,
                "resolution": self.resolution, "uncertainty": self.uncertainty,
                "steps": [s.to_dict() for s in self.steps]}

    def __str__(self) -> str:
        if self.value is None:
            return f"breaking {self.metric}: fails at the first step ({self.high:g})"
        if self.high is None:
            return f"breaking {self.metric}: above {self.value:g} (the limit; never failed)"
        return f"breaking {self.metric}: {self.value:g} (passes {self.low:g}, fails {self.high:g})"


def _rounder(metric: Metric) -> Callable[[float], float]:
    if metric == "users":
        return lambda x: float(max(1, round(x)))
    return lambda x: max(0.01, round(x, 2))


def find_breaking_point(probe: Probe, *, start: float, limit: float, growth: float = 2.0,
                        resolution: float = 0.1, max_steps: int = 20,
                        metric: Metric = "users") -> BreakingPoint:
    """Ramp then bisect for the highest load ``probe`` passes; see the module docstring.

    ``max_steps`` caps the number of probes (ramp and bisection together); when it is
    reached the bracket found so far is returned.
    """
    if metric not in ("users", "rate"):
        raise ValueError(f"metric must be 'users' or 'rate', not {metric!r}")
    if start <= 0 or limit < start:
        raise ValueError(f"need 0 < start <= limit (got start={start}, limit={limit})")
    if growth <= 1:
        raise ValueError(f"growth must be > 1 (got {growth})")
    if resolution <= 0:
        raise ValueError(f"resolution must be > 0 (got {resolution})")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 (got {max_steps})")
    rnd = _rounder(metric)
    start, limit = rnd(start), rnd(limit)
    steps: list[Step] = []

    def run(load: float, phase: Literal["ramp", "bisect"]) -> bool:
        began = time.monotonic()
        passed, summary = probe(load)
        steps.append(Step(load, bool(passed), phase, dict(summary or {}),
                          time.monotonic() - began))
        return bool(passed)

    low: float | None = None
    high: float | None = None
    load = start
    while len(steps) < max_steps:
        if run(load, "ramp"):
            low = load
            if load >= limit:
                break
            load = min(limit, rnd(load * growth))
            if load <= low:  # rounding could stall the ramp at small user counts
                load = low + 1
        else:
            high = load
            break

    if low is not None and high is not None:
        while len(steps) < max_steps and (high - low) / low > resolution:
            mid = rnd(math.sqrt(low * high)) if metric == "rate" else rnd((low + high) / 2)
            if not low < mid < high:
                break  # no whole number of users left between them
            if run(mid, "bisect"):
                low = mid
            else:
                high = mid
    return BreakingPoint(metric=metric, value=low, low=low, high=high, limit=limit,
                         resolution=resolution, steps=steps)
