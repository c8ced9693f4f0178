"""The breaking-point search against fake probes (no pytest plugin, no HTTP)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pytest_minigram.breaking import BreakingPoint, find_breaking_point


def threshold_probe(threshold: float, calls: list[float]) -> Any:
    def probe(load: float) -> tuple[bool, dict[str, Any]]:
        calls.append(load)
        return load <= threshold, {"load": load}
    return probe


@pytest.mark.parametrize("threshold", [1, 7, 37, 100, 255])
def test_users_exact_threshold_found(threshold: int) -> None:
    calls: list[float] = []
    bp = find_breaking_point(threshold_probe(threshold, calls), start=1, limit=1000,
                             resolution=0.0001, max_steps=50)
    assert bp.metric == "users"
    assert bp.value == bp.low == threshold
    assert bp.high == threshold + 1
    assert bp.found
    assert all(float(c).is_integer() for c in calls)
    assert len(calls) == len(set(calls)), "a load was probed twice"
    assert [s.load for s in bp.steps] == calls


def test_ramp_is_geometric_then_bisects() -> None:
    calls: list[float] = []
    bp = find_breaking_point(threshold_probe(50, calls), start=5, limit=1000, growth=2.0,
                             resolution=0.1)
    assert calls[:5] == [5, 10, 20, 40, 80]
    assert [s.phase for s in bp.steps[:5]] == ["ramp"] * 5
    assert all(s.phase == "bisect" for s in bp.steps[5:])
    assert bp.low is not None and bp.high is not None
    assert bp.low <= 50 < bp.high
    assert (bp.high - bp.low) / bp.low <= 0.1


def test_rate_resolution_is_relative() -> None:
    calls: list[float] = []
    bp = find_breaking_point(threshold_probe(13.3, calls), start=1, limit=200, metric="rate",
                             resolution=0.05)
    assert bp.metric == "rate"
    assert bp.low is not None and bp.high is not None
    assert bp.low <= 13.3 < bp.high
    assert (bp.high - bp.low) / bp.low <= 0.05
    assert bp.to_dict()["rate"] == bp.value


def test_never_fails_stops_at_limit() -> None:
    calls: list[float] = []
    bp = find_breaking_point(threshold_probe(float("inf"), calls), start=10, limit=300)
    assert calls == [10, 20, 40, 80, 160, 300]
    assert bp.value == bp.low == 300
    assert bp.high is None
    assert not bp.found
    assert bp.uncertainty is None
    assert "never failed" in str(bp)


def test_fails_at_start() -> None:
    calls: list[float] = []
    bp = find_breaking_point(threshold_probe(0, calls), start=4, limit=100)
    assert calls == [4]
    assert bp.value is None and bp.low is None
    assert bp.high == 4
    assert "first step" in str(bp)
    assert bp.to_dict()["users"] is None


def test_noisy_probe_keeps_a_consistent_bracket() -> None:
    """Around the threshold the probe is a coin toss; the bracket stays passed < failed."""
    rng = random.Random(7)
    calls: list[float] = []

    def probe(load: float) -> tuple[bool, dict[str, Any]]:
        calls.append(load)
        if 40 <= load <= 60:
            return rng.random() < 0.5, {}
        return load < 50, {}

    for _ in range(20):
        calls.clear()
        bp = find_breaking_point(probe, start=1, limit=1000, resolution=0.02)
        assert bp.low is not None and bp.high is not None
        assert bp.low < bp.high
        assert 20 <= bp.low <= 60 and 40 <= bp.high <= 64
        passed = {s.load for s in bp.steps if s.passed}
        failed = {s.load for s in bp.steps if not s.passed}
        assert bp.low == max(s.load for s in bp.steps if s.passed and s.load < bp.high)
        assert bp.high in failed and bp.low in passed
        assert len(calls) == len(set(calls))


def test_max_steps_caps_the_probes() -> None:
    calls: list[float] = []
    bp = find_breaking_point(threshold_probe(777, calls), start=1, limit=10_000,
                             resolution=0.0001, max_steps=12)
    assert len(calls) == 12
    assert bp.low is not None and bp.high is not None and bp.low <= 777 < bp.high


def test_small_user_counts_do_not_stall() -> None:
    calls: list[float] = []
    bp = find_breaking_point(threshold_probe(3, calls), start=1, limit=10, growth=1.2)
    assert calls[:4] == [1, 2, 3, 4]
    assert bp.value == 3 and bp.high == 4


def test_summary_and_to_dict() -> None:
    bp = find_breaking_point(lambda load: (load < 6, {"p95": load / 100}), start=2, limit=50)
    data = bp.to_dict()
    assert data["users"] == data["value"] == data["low"] == 5
    assert data["high"] == 6
    assert data["metric"] == "users"
    assert data["steps"][0] == {"load": 2, "passed": True, "phase": "ramp",
                                "summary": {"p95": 0.02}, "seconds": data["steps"][0]["seconds"]}
    assert isinstance(bp, BreakingPoint)


@pytest.mark.parametrize("kwargs", [dict(start=0, limit=10), dict(start=10, limit=5),
                                    dict(start=1, limit=5, growth=1.0),
                                    dict(start=1, limit=5, resolution=0),
                                    dict(start=1, limit=5, max_steps=0),
                                    dict(start=1, limit=5, metric="rps")])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        find_breaking_point(lambda load: (True, {}), **kwargs)
