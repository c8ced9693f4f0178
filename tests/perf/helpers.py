"""Helpers of the perf suite: pacing and the figures it prints."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_minigram.plugin import settings


def unscaled_seconds(config: pytest.Config, seconds: float) -> float:
    """A duration that ``--minigram-duration`` will scale back to ``seconds``.

    A ramp's length is set by how fast the server can take new users, not by how long we
    want to measure: passing ``unscaled_seconds(ramp) + hold`` as a duration keeps the ramp
    whole and scales only the hold. A fixed ``--minigram-duration=20s`` still wins.
    """
    factor = settings(config).duration_factor or 1.0
    return seconds / factor


def summary(result: Any) -> dict[str, Any]:
    """The figures the suite prints and asserts on, rounded for the log."""
    return {"count": result.count, "throughput": round(result.throughput, 2),
            "error_rate": round(result.error_rate, 4), "mean_ms": round(result.mean * 1000, 1),
            "p50_ms": round(result.p50 * 1000, 1), "p95_ms": round(result.p95 * 1000, 1),
            "errors": {kind: info.get("count") for kind, info in result.errors.items()}}
