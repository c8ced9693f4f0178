from __future__ import annotations

import random

import pytest

from pytest_minigram.load.recorder import Recorder, bucket_index, parse_server_timing
from pytest_minigram.load.result import HIGHEST_US, new_histogram


def test_bucket_index_matches_hdrh() -> None:
    hist = new_histogram()
    rng = random.Random(1)
    values = [0, 1, 2, 1023, 1024, 2047, 2048, 4095, 4096, 10**6, HIGHEST_US]
    values += [int(rng.lognormvariate(9, 3)) % HIGHEST_US for _ in range(5000)]
    for v in values:
        assert bucket_index(v) == hist._counts_index_for(v), v


def test_fast_recording_equals_record_value() -> None:
    rng = random.Random(3)
    rec = Recorder()
    reference = new_histogram()
    for _ in range(5000):
        seconds = rng.lognormvariate(-4, 2)
        rec.record("a", seconds, 0.0, False)
        reference.record_value(min(int(seconds * 1e6), HIGHEST_US))
    hist = rec.total.histogram
    assert list(hist.counts) == list(reference.counts)
    assert hist.get_total_count() == reference.get_total_count()
    assert hist.get_min_value() == reference.get_min_value()
    assert hist.get_max_value() == reference.get_max_value()
    assert hist.encode() == reference.encode()


def test_values_beyond_range_are_clamped() -> None:
    rec = Recorder()
    rec.record("a", 10_000.0, 0.0, True)
    assert rec.total.count == 1
    assert rec.total.histogram.get_max_value() >= HIGHEST_US * 0.999


def test_parse_server_timing() -> None:
    assert parse_server_timing(b'db;dur=1.5;desc="x", cache;desc=y;dur=0.5, app;dur="2"') == [
        ("db", 0.0015), ("cache", 0.0005), ("app", 0.002)]
    assert parse_server_timing(b"miss, , db;dur=oops") == []


def test_server_timing_aggregated_per_action() -> None:
    rec = Recorder()
    rec.record("feed", 0.01, 0.0, False, b"db;dur=2, app;dur=3")
    rec.record("feed", 0.01, 0.0, False, b"db;dur=4")
    rec.record("like", 0.01, 0.0, False, None)
    assert rec.server_timing == {"feed": {"db": {"count": 2, "total": pytest.approx(0.006)},
                                          "app": {"count": 1, "total": pytest.approx(0.003)}}}


def test_first_error_example_is_kept() -> None:
    rec = Recorder()
    rec.error("status:500", "first")
    rec.error("status:500", lambda: "second")
    rec.error("timeout", lambda: "built lazily")
    assert rec.errors == {"status:500": {"count": 2, "example": "first"},
                          "timeout": {"count": 1, "example": "built lazily"}}


def test_tick_closes_one_second_rows() -> None:
    rec = Recorder()
    for ms in (10, 20, 30, 40):
        rec.record("a", ms / 1000, 0.0, ms == 40)
    row = rec.tick(users=3)
    assert row["t"] == 0 and row["requests"] == 4 and row["errors"] == 1 and row["users"] == 3
    assert row["p50"] == pytest.approx(0.020, rel=1e-3)
    assert row["p95"] == pytest.approx(0.040, rel=1e-3)
    empty = rec.tick(users=0)
    assert empty["t"] == 1 and empty["requests"] == 0 and empty["p50"] is None
