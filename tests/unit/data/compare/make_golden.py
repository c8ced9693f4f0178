"""Regenerate the golden results files of tests/unit/test_compare.py (deterministic).

    .venv/bin/python tests/unit/data/compare/make_golden.py

Each run holds two perf tests at stage 2. Latencies are log-normal (median 20 ms) with a
per-second drift of a few percent, as on a shared machine. ``test_feed`` carries the
scenario, ``test_browse`` is the same in every file.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

from pytest_minigram.load.result import ActionStats, Result, new_histogram
from pytest_minigram.storage import new_run, save_run

HERE = Path(__file__).parent
FEED = "tests/perf/test_feed.py::test_feed"
BROWSE = "tests/perf/test_feed.py::test_browse"
DURATION = 25
RAMP_UP = 2
RPS = 200
ENV_FINGERPRINT = "0123456789abcdef"


def make_result(seed: int, test: str, factor: float = 1.0, spikes: tuple[int, ...] = (),
                drift: float = 0.04, error_every: int = 0) -> dict[str, Any]:
    rnd = random.Random(seed)
    total = ActionStats()
    action = ActionStats()
    rows = []
    for t in range(DURATION + 1):
        second = new_histogram()
        n = RPS if t < DURATION else RPS // 20  # the last, partial second
        if t < RAMP_UP:
            n = RPS * (t + 1) // (RAMP_UP + 1)
        window = factor * math.exp(rnd.gauss(0, drift)) * (3.0 if t in spikes else 1.0)
        errors = 0
        for i in range(n):
            latency_us = int(20_000 * window * math.exp(rnd.gauss(0, 0.35)))
            failed = bool(error_every) and i % error_every == 0
            errors += failed
            for stats in (total, action):
                stats.histogram.record_value(latency_us)
                stats.count += 1
                stats.errors += failed
                stats.apdex_counts[2 if failed else 0] += 1
            second.record_value(latency_us)
        pct = second.get_percentile_to_value_dict([50.0, 95.0])
        blob = second.encode()
        rows.append({"t": t, "requests": n, "errors": errors, "p50": pct[50.0] / 1e6,
                     "p95": pct[95.0] / 1e6, "users": 20,
                     "histogram": blob.decode() if isinstance(blob, bytes) else blob})
    result = Result(
        workload={"model": "closed", "users": 20, "ramp_up": float(RAMP_UP),
                  "duration": float(DURATION), "iterations": None, "think_time": None,
                  "rate": None, "stages": None},
        labels={"test": test, "stage": "2", "journey": "feed"},
        started_at=1764338000.0 + seed, duration=DURATION + 0.05, apdex_t=0.5,
        iterations=total.count, total=total, actions={"feed": action}, timeseries=rows,
    )
    return result.to_dict()


def entry(test: str, result: dict[str, Any]) -> dict[str, Any]:
    p95 = result["total"]["p95"]
    return {"test": test, "stage": "2", "result": result,
            "slo": [{"threshold": "p95 < 500ms", "measured": p95, "passed": p95 < 0.5}],
            "verdict": "passed"}


def run(feed: dict[str, Any] | None, seed: int, fingerprint: str = ENV_FINGERPRINT
        ) -> dict[str, Any]:
    env = {"git": {"commit": f"{seed:040x}", "branch": "main", "dirty": False, "time": None,
                   "project": "minigram"},
           "machine": {"cpu_model": "Golden CPU", "cpu_count": 2, "system": "Linux",
                       "python_version": "3.11.7"},
           "machine_id": "Linux-CPython-3.11-64bit", "fingerprint": fingerprint,
           "packages": {}, "stage_config": {"stage": "2"}}
    tests = [entry(BROWSE, make_result(1000 + seed, BROWSE))]
    if feed is not None:
        tests.insert(0, entry(FEED, feed))
    return new_run(env, tests, created_at="2026-11-28T12:00:00+00:00")


SCENARIOS = {
    "baseline.json": lambda: run(make_result(1, FEED), 1),
    "unchanged.json": lambda: run(make_result(2, FEED), 2),
    "regression_p95.json": lambda: run(make_result(3, FEED, factor=1.25), 3),
    "small_change.json": lambda: run(make_result(4, FEED, factor=1.02), 4),
    "spike.json": lambda: run(make_result(5, FEED, spikes=(9, 17)), 5),
    "shift_5pct.json": lambda: run(make_result(6, FEED, factor=1.06, drift=0.01), 6),
    "errors.json": lambda: run(make_result(7, FEED, error_every=50), 7),
    "other_machine.json": lambda: run(make_result(8, FEED), 8, fingerprint="fedcba9876543210"),
    "missing_test.json": lambda: run(None, 9),
}


def main() -> int:
    for name, build in SCENARIOS.items():
        save_run(build(), HERE / name)
    (HERE / "corrupt.json").write_text(
        (HERE / "baseline.json").read_text(encoding="utf-8")[:700], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
