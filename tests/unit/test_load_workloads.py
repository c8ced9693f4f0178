from __future__ import annotations

import pytest

from pytest_minigram.load import Closed, Open, RampingRate, Workload, parse_duration
from pytest_minigram.load.workloads import workload_from_dict


def test_closed_split_spreads_the_remainder() -> None:
    parts = Closed(users=10, duration=5.0, ramp_up=1.0).split(4)
    assert [p.users for p in parts] == [3, 3, 2, 2]
    assert all(p.duration == 5.0 and p.ramp_up == 1.0 for p in parts)
    assert Closed(users=10, duration=1.0).split(1)[0].users == 10


def test_open_split_sums_and_interleaves() -> None:
    whole = Open(rate=10.0, duration=2.0, max_users=7)
    parts = whole.split(3)
    assert sum(p.rate for p in parts) == whole.rate
    assert sum(p.max_users for p in parts) == 7
    merged = sorted(t for p in parts for t in p.arrival_offsets())
    assert merged == pytest.approx(list(whole.arrival_offsets()))
    assert len(merged) == 20


def test_ramping_arrivals_follow_the_integral_of_the_rate() -> None:
    wl = RampingRate(stages=[(10, 2.0), (10, 1.0), (0, 2.0)])
    offsets = list(wl.arrival_offsets())
    # 0->10 over 2 s: 10 arrivals; flat 10/s for 1 s: 10; 10->0 over 2 s: 10
    assert len(offsets) == 30
    assert offsets == sorted(offsets)
    assert offsets[0] == 0.0
    assert sum(1 for t in offsets if t < 2.0) == 10
    assert sum(1 for t in offsets if 2.0 <= t < 3.0) == 10
    # first ramp: N(t) = 2.5 t^2, so arrival k at sqrt(k / 2.5)
    assert offsets[5] == pytest.approx((5 / 2.5) ** 0.5)
    parts = wl.split(2)
    merged = sorted(t for p in parts for t in p.arrival_offsets())
    assert merged == pytest.approx(offsets)


def test_scaled() -> None:
    c = Closed(users=10, duration=20.0, ramp_up=2.0).scaled(users=2.0, duration=0.5)
    assert (c.users, c.duration, c.ramp_up) == (20, 10.0, 1.0)
    o = Open(rate=50.0, duration=20.0, max_users=100).scaled(rate=2.0, duration=0.5, users=0.5)
    assert (o.rate, o.duration, o.max_users) == (100.0, 10.0, 50)
    r = RampingRate(stages=[(10, 5.0)]).scaled(rate=3.0, duration=2.0)
    assert r.stages == [(30.0, 10.0)] and r.duration == 10.0


def test_protocol_and_round_trip() -> None:
    for wl in (Closed(users=3, duration=1.0, think_time=(0.5, 1.5)), Open(rate=5.0, duration=2.0),
               RampingRate(stages=[(5, 1.0)], max_users=9)):
        assert isinstance(wl, Workload)
        assert workload_from_dict(wl.to_dict()) == wl


def test_validation() -> None:
    with pytest.raises(ValueError, match="duration or an iteration count"):
        Closed(users=3)
    with pytest.raises(ValueError):
        RampingRate(stages=[])
    with pytest.raises(ValueError):
        Closed(users=3, duration=1.0).split(0)
    with pytest.raises(ValueError, match="unknown workload model"):
        workload_from_dict({"model": "x"})


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0), (3, 3.0),
    ("2m", 120.0),
])
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "1x", "m", "1m-3s"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)
