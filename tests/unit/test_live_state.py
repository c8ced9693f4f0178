"""The live state and its terminal line, without pytest sessions: rows in, figures out."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_minigram.coordination import SeriesAggregate
from pytest_minigram.live.prometheus import LiveCollector
from pytest_minigram.live.state import (
    PROMETHEUS_BOUNDS,
    RECENT,
    LiveState,
    LoadView,
    format_line,
)
from pytest_minigram.load.recorder import Recorder


def _seconds(latencies: list[list[float]], users: int = 4, failed_every: int = 0,
             cpu: float | None = 0.3, bounds: tuple[float, ...] | None = None,
             action: str | None = None) -> list[dict[str, Any]]:
    """Engine deltas, one per second, from a real Recorder."""
    rec = Recorder(latency_bounds=bounds)
    out = []
    n = 0
    for second in latencies:
        for latency in second:
            n += 1
            name = action or ("feed" if n % 3 else "post")
            rec.record(name if bounds else "feed", latency, 0.0,
                       bool(failed_every and n % failed_every == 0))
        out.append(rec.delta(rec.tick(users), cpu))
    return out


def test_engine_deltas_fold_into_totals_rate_and_recent_p95() -> None:
    state = LiveState()
    load = state.begin("t.py::test_a", stage="stage1", workload={"model": "closed", "users": 4},
                       planned=20.0, started=1000.0)
    # 7 seconds: the first two slow (1 s), then 10 ms; the recent p95 forgets the slow ones
    deltas = _seconds([[1.0] * 10, [1.0] * 10] + [[0.010] * 20] * 5, failed_every=10)
    for d in deltas:
        state.second(load.id, d)
    view = state.get(load.id).view(now=1007.0)  # type: ignore[union-attr]
    assert view.requests == 10 + 10 + 5 * 20
    assert view.rps == pytest.approx(20.0)  # mean of the last 3 seconds
    assert view.error_rate == pytest.approx(12 / 120)
    assert view.p95 == pytest.approx(0.010, rel=0.01)  # of the last RECENT seconds only
    assert RECENT == 5
    assert view.users == 4 and view.elapsed == pytest.approx(7.0) and not view.saturated
    assert state.get(load.id).actions == {"feed": [120, 12]}  # type: ignore[union-attr]
    line = state.line(load.id, now=1007.0)
    assert line == ("minigram live: t.py::test_a [stage1] 7s/20s | users 4 | 20.0 req/s | "
                    "requests 120 | errors 10.00% | p95(5s) 10.0 ms")
    assert state.get(load.id).histogram.get_total_count() == 120  # type: ignore[union-attr]


def test_saturation_dropped_and_open_workloads_show_in_the_line() -> None:
    state = LiveState()
    load = state.begin("t.py::test_b", 1, workload={"model": "open", "rate": 50},
                       planned=10, started=0.0, workers=2)
    row = {"t": 0, "requests": 40, "errors": 0, "users": 7, "p50": None, "p95": None,
           "histogram": None}
    state.second(load.id, row, {"actions": {}, "dropped": 3, "cpu": 0.97})
    line = state.line(load.id, now=1.0)
    assert "t.py::test_b #2" in line and "rate 50/s users 7" in line
    assert "2 workers" in line and "dropped 3" in line
    assert "WARNING generator saturated (CPU 97%)" in line and "p95(5s) -" in line


def test_finish_and_snapshot() -> None:
    state = LiveState()
    a = state.begin("t.py::a", planned=5, started=0.0)
    for d in _seconds([[0.01] * 3] * 2):
        state.second(a.id, d)
    state.finish(a.id, "stopped", "stopped from the live page", ended=2.0)
    b = state.begin("t.py::b", planned=5, started=2.0)
    snap = state.snapshot(now=3.0)
    assert [x["test"] for x in snap["running"]] == ["t.py::b"]
    (done,) = snap["finished"]
    assert done["outcome"] == "stopped" and done["elapsed"] == 2.0 and done["requests"] == 6
    assert done["series"]["requests"] == [3, 3] and done["series"]["t"] == [0, 1]
    assert done["line"].endswith("| stopped")
    assert state.version > 0 and [ld.test for ld in state.running()] == ["t.py::b"]
    state.finish(b.id, "passed")
    state.finish(b.id, "failed")  # the first verdict stands
    assert state.get(b.id).outcome == "passed"  # type: ignore[union-attr]


def test_merged_seconds_of_two_workers_are_what_the_line_counts() -> None:
    """The xdist path: the coordinator's SeriesAggregate folds the workers' deltas; the live
    state counts exactly what the merged series holds."""
    agg = SeriesAggregate(["gw0", "gw1"])
    agg.started("gw0", 100.0)
    agg.started("gw1", 100.2)
    d0 = _seconds([[0.01] * 5] * 3, cpu=0.2)
    d1 = _seconds([[0.02] * 7] * 3, cpu=0.95)
    state = LiveState()
    load = state.begin("t.py::x", workers=2, started=100.0)
    for a, b in zip(d0, d1, strict=True):
        agg.add("gw0", a)
        agg.add("gw1", b)
        for row, extra in agg.take_new():
            state.second(load.id, row, extra)
    agg.finish("gw0")
    agg.finish("gw1")
    for row, extra in agg.take_new():
        state.second(load.id, row, extra)
    assert sum(r["requests"] for r in agg.rows()) == state.get(load.id).requests == 36  # type: ignore[union-attr]
    view: LoadView = state.get(load.id).view(now=103.0)  # type: ignore[union-attr]
    assert view.rps == pytest.approx(12.0) and view.saturated  # the busiest worker counts
    assert state.get(load.id).actions == {"feed": [36, 0]}  # type: ignore[union-attr]


def test_per_action_latency_buckets_add_up_over_seconds_and_workers() -> None:
    """Engine (le counts per second) -> coordinator (summed over workers) -> live state ->
    the Prometheus histogram per action: exact counts at each bound, the latency sum."""
    worker_latencies = {"gw0": [[0.0008, 0.004, 0.004, 0.03, 0.2, 0.7]] * 3,
                        "gw1": [[0.002, 0.009, 0.06, 0.06, 3.0, 12.0]] * 2}
    agg = SeriesAggregate(list(worker_latencies))
    deltas = {}
    for wid, seconds in worker_latencies.items():
        agg.started(wid, 100.0)
        deltas[wid] = _seconds(seconds, bounds=PROMETHEUS_BOUNDS)
    state = LiveState()
    load = state.begin("t.py::x", stage="stage2", workers=2, started=100.0)
    for wid, rows in deltas.items():
        for row in rows:
            agg.add(wid, row)
    for wid in worker_latencies:
        agg.finish(wid)
    for row, extra in agg.take_new():
        state.second(load.id, row, extra)
    # what each action saw, counted from the latencies themselves
    expected: dict[str, list[float]] = {}
    for seconds in worker_latencies.values():
        n = 0
        for second in seconds:
            for latency in second:
                n += 1
                slot = expected.setdefault("feed" if n % 3 else "post",
                                           [0] * len(PROMETHEUS_BOUNDS) + [0.0])
                for i, bound in enumerate(PROMETHEUS_BOUNDS):
                    slot[i] += latency <= bound
                slot[-1] += latency
    got = state.get(load.id).latency  # type: ignore[union-attr]
    assert set(got) == {"feed", "post"}
    for name, values in expected.items():
        assert got[name][:-1] == values[:-1], name
        assert got[name][-1] == pytest.approx(values[-1], rel=2e-3)
    metrics = {m.name: m for m in LiveCollector(state).collect()}
    samples = {(s.name, s.labels.get("action"), s.labels.get("le")): s.value
               for s in metrics["minigram_action_latency_seconds"].samples}
    feed_count = state.get(load.id).actions["feed"][0]  # type: ignore[union-attr]
    assert samples[("minigram_action_latency_seconds_bucket", "feed", "0.005")] == \
        expected["feed"][PROMETHEUS_BOUNDS.index(0.005)]
    assert samples[("minigram_action_latency_seconds_bucket", "feed", "+Inf")] == feed_count
    assert samples[("minigram_action_latency_seconds_count", "feed", None)] == feed_count
    # the engine counts them only when asked (the controller serves Prometheus)
    plain = _seconds([[0.01] * 4])
    assert all("le" not in a for d in plain for a in d["actions"].values())


def test_format_line_without_plan_or_stage() -> None:
    line = format_line(LoadView(test="t::c", call=0, stage="", elapsed=3.4, planned=None,
                                users=1, rate=None, rps=0.0, requests=0, error_rate=0.0,
                                p95=None, cpu=None, saturated=False))
    assert line == ("minigram live: t::c 3s | users 1 | 0.0 req/s | requests 0 | errors 0.00% | "
                    "p95(5s) -")
