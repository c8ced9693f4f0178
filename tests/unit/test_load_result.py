from __future__ import annotations

import json
import math
import random

import pytest

from pytest_minigram.load import Result, concat, format_apdex, merge
from pytest_minigram.load.recorder import Recorder

PERCENTILES = [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]


def _samples(n: int, seed: int = 7) -> list[tuple[str, float, float, bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        action = rng.choice(["feed", "like", "upload"])
        latency = rng.lognormvariate(-4.0, 1.2)  # ~18 ms median, long tail
        lag = rng.choice([0.0, 0.0, 0.0, rng.uniform(0, 0.5)])
        out.append((action, latency, lag, rng.random() < 0.03))
    return out


def _record(samples: list[tuple[str, float, float, bool]], open_model: bool) -> Result:
    rec = Recorder(apdex_t=0.05, open_model=open_model)
    rec.started = 1000.0
    for action, latency, lag, failed in samples:
        rec.record(action, latency, lag, failed, b"db;dur=2" if action == "feed" else None)
        if failed:
            rec.error("status:503", f"{action} -> 503")
    rec.iterations = len(samples) // 3
    rec.tick(5)
    return rec.result(duration=10.0, workload={"model": "open", "rate": 10.0}, labels={"a": "b"},
                      generator={"processes": 1, "cpu_mean": 0.2, "cpu_max": 0.4,
                                 "saturated": False, "saturated_fraction": 0.0},
                      interrupted=False)


@pytest.mark.parametrize("open_model", [False, True])
def test_merge_of_four_partials_is_exact(open_model: bool) -> None:
    samples = _samples(20_000)
    whole = _record(samples, open_model)
    parts = [_record(samples[i::4], open_model) for i in range(4)]
    # through JSON, as partial results travel between processes
    parts = [Result.from_dict(json.loads(json.dumps(p.to_dict()))) for p in parts]
    merged = merge(parts)
    for stats_w, stats_m in [(whole.total, merged.total)] + [
        (whole.actions[a], merged.actions[a]) for a in whole.actions
    ]:
        assert stats_m.count == stats_w.count
        assert stats_m.errors == stats_w.errors
        assert stats_m.apdex_counts == stats_w.apdex_counts
        assert stats_m.min == stats_w.min and stats_m.max == stats_w.max
        assert stats_m.mean == pytest.approx(stats_w.mean, rel=1e-12)
        for q in PERCENTILES:
            assert stats_m.percentile(q) == stats_w.percentile(q), q
            if open_model:
                assert stats_m.percentile(q, uncorrected=True) == stats_w.percentile(
                    q, uncorrected=True)
    assert merged.errors["status:503"]["count"] == whole.errors["status:503"]["count"]
    assert merged.server_timing["feed"]["db"]["count"] == whole.server_timing["feed"]["db"]["count"]
    assert merged.server_timing["feed"]["db"]["total"] == pytest.approx(
        whole.server_timing["feed"]["db"]["total"])
    assert merged.timeseries[0]["requests"] == whole.timeseries[0]["requests"]
    assert merged.timeseries[0]["p95"] == whole.timeseries[0]["p95"]
    assert merged.timeseries[0]["users"] == 20
    assert merged.generator["processes"] == 4
    assert merged.workload["rate"] == 40.0
    assert merged.throughput == pytest.approx(whole.throughput)


def test_round_trip_and_schema_keys() -> None:
    result = _record(_samples(2000), open_model=True)
    d = result.to_dict()
    assert d["schema"] == "pytest-minigram/result" and d["version"] == 1
    assert set(d) >= {"labels", "workload", "started_at", "duration", "apdex_t", "iterations",
                      "dropped_iterations", "total", "actions", "errors", "timeseries",
                      "server_timing", "generator", "interrupted"}
    total = d["total"]
    for key in ("count", "errors", "histogram", "uncorrected_histogram", "apdex", "min", "mean",
                "max", "p50", "p90", "p95", "p99", "p99_9", "throughput", "error_rate",
                "apdex_score"):
        assert key in total
    again = Result.from_dict(json.loads(json.dumps(d)))
    assert again.to_dict() == d


def test_uncorrected_ignores_lag() -> None:
    rec = Recorder(open_model=True)
    for _ in range(99):
        rec.record("x", 0.010, 0.0, False)
    rec.record("x", 0.010, 2.0, False)
    res = rec.result(duration=1.0, workload={}, labels={}, generator={}, interrupted=False)
    assert res.percentile(100) == pytest.approx(2.010, rel=1e-3)
    assert res.percentile(100, uncorrected=True) == pytest.approx(0.010, rel=1e-3)


def test_metric_names() -> None:
    rec = Recorder(apdex_t=0.5)
    for ms in range(1, 101):
        rec.record("feed", ms / 1000, 0.0, ms > 98)
    res = rec.result(duration=2.0, workload={}, labels={}, generator={}, interrupted=False)
    assert res.metric("count") == 100
    assert res.metric("errors") == 2
    assert res.metric("error_rate") == pytest.approx(0.02)
    assert res.metric("throughput") == pytest.approx(50.0)
    assert res.metric("p50", action="feed") == pytest.approx(0.050, rel=2e-3)
    assert res.metric("p99.9") == pytest.approx(0.100, rel=2e-3)
    assert res.metric("p99_9") == res.metric("p99.9")
    assert res.metric("max") == pytest.approx(0.100, rel=2e-3)
    assert res.metric("apdex") == pytest.approx(0.98)
    with pytest.raises(KeyError, match="unknown metric"):
        res.metric("p95ish")
    with pytest.raises(KeyError, match="no request recorded"):
        res.metric("p95", action="nope")


def test_apdex_counts_errors_as_frustrated_and_formats() -> None:
    rec = Recorder(apdex_t=0.1)
    rec.record("a", 0.05, 0.0, False)   # satisfied
    rec.record("a", 0.3, 0.0, False)    # tolerating (<= 4T)
    rec.record("a", 0.5, 0.0, False)    # frustrated
    rec.record("a", 0.01, 0.0, True)    # error: frustrated however fast
    res = rec.result(duration=1.0, workload={}, labels={}, generator={}, interrupted=False)
    assert res.total.apdex_counts == [1, 1, 2]
    assert res.apdex == pytest.approx((1 + 0.5) / 4)
    assert res.apdex_label == "0.38 [0.1s]"
    assert format_apdex(None, 0.5) == "n/a [0.5s]"


def test_empty_result_is_well_formed() -> None:
    res = Recorder().result(duration=1.0, workload={}, labels={}, generator={},
                            interrupted=True)
    assert res.count == 0 and math.isnan(res.p95) and res.apdex is None
    again = merge([Result.from_dict(res.to_dict()), Result.from_dict(res.to_dict())])
    assert again.count == 0 and again.interrupted


def test_from_dict_rejects_foreign_data() -> None:
    with pytest.raises(ValueError, match="not a pytest-minigram result"):
        Result.from_dict({"schema": "other"})
    with pytest.raises(ValueError, match="unsupported result version"):
        Result.from_dict({"schema": "pytest-minigram/result", "version": 99})


def test_concat_of_rounds_adds_exactly_and_runs_the_time_series_on() -> None:
    samples = _samples(9_000)
    rounds = [_record(samples[i * 3000:(i + 1) * 3000], False) for i in range(3)]
    for i, part in enumerate(rounds):
        part.started_at = 1000.0 + 11 * i  # one after the other, with a pause between
        part.duration = 10.4
    whole = merge(rounds)  # the same requests as one run: the reference for the counters
    joined = concat(rounds, ["http://127.0.0.1:1", "http://127.0.0.1:2"])
    assert joined.count == whole.count and joined.total.errors == whole.total.errors
    for q in PERCENTILES:
        assert joined.percentile(q) == whole.percentile(q)
    assert joined.duration == pytest.approx(3 * 10.4)  # the pauses are not load
    assert joined.throughput == pytest.approx(9000 / 31.2)
    assert joined.workload == rounds[0].workload  # the same workload, not three users' worth
    assert [r["offset"] for r in joined.rounds] == [0, 11, 22]
    assert [r.get("target") for r in joined.rounds] == [
        "http://127.0.0.1:1", "http://127.0.0.1:2", None]
    per_round = [[row for row in joined.timeseries if row["round"] == i] for i in range(3)]
    for i, rows in enumerate(per_round):
        assert [row["t"] for row in rows] == [11 * i + row["t"] for row in rounds[i].timeseries]
        assert sum(row["requests"] for row in rows) == 3000
    back = Result.from_dict(json.loads(json.dumps(joined.to_dict())))
    assert back.rounds == joined.rounds and back.timeseries == joined.timeseries
    assert Result.from_dict({**rounds[0].to_dict(), "rounds": None}).rounds == []
    with pytest.raises(ValueError):
        concat([])


def test_results_written_before_connection_times_and_expected_counts_still_load() -> None:
    old = _record(_samples(300), open_model=False).to_dict()
    del old["connections"]
    for stats in (old["total"], *old["actions"].values()):
        del stats["expected"]
    back = Result.from_dict(json.loads(json.dumps(old)))
    assert back.connect.count == 0 and back.tls.count == 0 and math.isnan(back.tls.mean)
    assert back.total.expected == {}
    merged = merge([back, back])
    assert merged.count == 2 * back.count and merged.tls.count == 0
    again = merged.to_dict()
    assert again["connections"]["connect"]["count"] == 0
    assert again["total"]["expected"] == {}


def test_expected_counts_merge_exactly() -> None:
    parts = []
    for n in (2, 3):
        rec = Recorder()
        for _ in range(n):
            rec.record("like", 0.01, 0.0, False)
            rec.actions["like"].count_expected(409)
            rec.total.count_expected(409)
        parts.append(rec.result(duration=1.0, workload={}, labels={}, generator={},
                                interrupted=False))
    merged = merge(Result.from_dict(p.to_dict()) for p in parts)
    assert merged.actions["like"].expected == {409: 5} and merged.total.expected == {409: 5}
    assert merged.total.errors == 0
