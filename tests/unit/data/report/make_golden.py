"""Generate the golden run files for the report tests: `python make_golden.py`.

The files are synthetic but shaped like real Minigram runs on a 2-core machine: stage 1
(SQLite, no pool, no cache) fails with `503 database is locked` from a handful of users,
stage 1.5 later, stage 2 (PostgreSQL + Redis) holds ~190 users. Register and login spend
almost all their time in password hashing. A seeded RNG makes the output reproducible,
and each ActionStats' derived keys are computed from its own HdrHistogram, as
Result.to_dict() does.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

HERE = Path(__file__).parent
ACTIONS = {"register": 0.05, "login": 0.12, "feed": 0.45, "like": 0.2, "follow": 0.12,
           "upload": 0.06}
# Mean Server-Timing milliseconds per request, by stage and action.
TIMING: dict[str, dict[str, dict[str, float]]] = {
    "1": {"register": {"db": 24.0, "hash": 58.0, "app": 1.0},
          "login": {"db": 9.0, "hash": 57.0, "app": 0.8},
          "feed": {"db": 14.0, "app": 1.5}, "like": {"db": 8.0, "app": 0.5},
          "follow": {"db": 7.0, "app": 0.5}, "upload": {"db": 10.0, "app": 28.0}},
    "1.5": {"register": {"db": 6.0, "cache": 0.1, "hash": 58.0, "app": 1.0},
            "login": {"db": 2.0, "cache": 0.1, "hash": 57.0, "app": 0.8},
            "feed": {"db": 3.0, "cache": 0.2, "app": 1.2},
            "like": {"db": 2.0, "cache": 0.1, "app": 0.5},
            "follow": {"db": 2.0, "cache": 0.1, "app": 0.5},
            "upload": {"db": 3.0, "app": 26.0}},
    "2": {"register": {"db": 2.2, "cache": 0.3, "hash": 58.0, "app": 0.8},
          "login": {"db": 1.2, "cache": 0.3, "hash": 57.0, "app": 0.6},
          "feed": {"db": 1.5, "cache": 0.6, "app": 1.0},
          "like": {"db": 1.2, "cache": 0.4, "app": 0.4},
          "follow": {"db": 1.1, "cache": 0.3, "app": 0.4},
          "upload": {"db": 1.5, "app": 24.0}},
}
CAPACITY = {"1": 24.0, "1.5": 85.0, "2": 230.0}  # requests/s the server can serve
ERRORS = {"1": (5, 25, 0.85), "1.5": (55, 110, 0.6), "2": (150, 300, 0.3)}  # onset, span, max
ERROR_KIND = {
    "1": ("status:503", 'POST /api/like -> 503 {"error": "database_locked", '
                        '"detail": "database is locked"}', 1.0),
    "1.5": ("status:503", 'POST /api/follow -> 503 {"error": "database_locked", '
                          '"detail": "database is locked"}', 1.0),
    "2": ("timeout", "GET /api/feed: no response within 5.0 s", 5.0),
}
CONFIGS = {
    "1": {"database": "sqlite", "pool": "NullPool", "cache": "none", "workers": 1,
          "hash": "bcrypt(10)"},
    "1.5": {"database": "sqlite (WAL)", "pool": "QueuePool(5)", "cache": "in-process",
            "workers": 1, "hash": "bcrypt(10)"},
    "2": {"database": "postgresql", "pool": "QueuePool(10)", "cache": "redis", "workers": 2,
          "hash": "bcrypt(10)"},
}
APDEX_T = 0.5


def _hist() -> HdrHistogram:
    return HdrHistogram(1, 3_600_000_000, 3)


def _stats(hist: HdrHistogram, errors: int, apdex: dict[str, int], duration: float,
           micros_sum: float, uncorrected: HdrHistogram | None = None) -> dict[str, Any]:
    n = hist.get_total_count()
    sat = apdex["satisfied"] + apdex["tolerating"] + apdex["frustrated"]
    out: dict[str, Any] = {
        "count": n, "errors": errors, "histogram": hist.encode().decode("ascii"),
        "uncorrected_histogram": None if uncorrected is None
        else uncorrected.encode().decode("ascii"),
        "apdex": dict(apdex),
    }
    if n:
        pct = {q: v / 1e6 for q, v in
               hist.get_percentile_to_value_dict([50, 90, 95, 99, 99.9]).items()}
        out.update({
            "min": hist.get_min_value() / 1e6, "mean": micros_sum / n / 1e6,
            "max": hist.get_max_value() / 1e6, "p50": pct[50], "p90": pct[90],
            "p95": pct[95], "p99": pct[99], "p99_9": pct[99.9],
            "throughput": n / duration, "error_rate": errors / n,
            "apdex_score": (apdex["satisfied"] + apdex["tolerating"] / 2) / sat if sat else 0,
        })
    return out


def simulate(stage: str, users_at: Any, duration: int, *, labels: dict[str, str],
             workload: dict[str, Any], rate: float | None = None, seed: int = 1,
             samples_per_second: int = 60, saturated_from: float | None = None) -> dict[str, Any]:
    """One Result dict: users_at(t) -> active users; rate caps offered load (open model)."""
    rng = random.Random(seed)
    cap = CAPACITY[stage]
    onset, span, err_max = ERRORS[stage]
    err_kind, err_example, err_latency = ERROR_KIND[stage]
    hists = {a: _hist() for a in ACTIONS}
    uncorrected = {a: _hist() for a in ACTIONS} if rate is not None else None
    total, total_unc = _hist(), (_hist() if rate is not None else None)
    errs = dict.fromkeys(ACTIONS, 0)
    sums = dict.fromkeys(ACTIONS, 0.0)
    apdex = {a: {"satisfied": 0, "tolerating": 0, "frustrated": 0} for a in ACTIONS}
    timing = {a: {c: [0, 0.0] for c in TIMING[stage][a]} for a in ACTIONS}
    series, served_total = [], 0
    for t in range(duration):
        users = users_at(t)
        offered = rate if rate is not None else 1.6 * users
        served = min(offered, cap) * rng.uniform(0.93, 1.05)
        rho = min(offered / cap, 0.97)
        queue = 1 / (1 - rho) + max(0.0, offered / cap - 1) * 6
        if rate is not None and offered > cap:  # corrected: time spent waiting to start
            queue += (offered / cap - 1) * t * 4
        p_err = min(err_max, max(0.0, (users - onset) / span)) if rate is None else \
            min(err_max, max(0.0, (offered - cap) / offered * 0.5))
        requests = max(0, round(served))
        served_total += requests
        weight = max(1, math.ceil(requests / samples_per_second)) if requests else 1
        second: list[float] = []
        errors_now = 0
        for done in range(0, requests, weight):
            action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
            n = min(weight, requests - done)
            failed = rng.random() < p_err
            comps = TIMING[stage][action]
            server_s = sum(comps.values()) / 1e3
            if failed:
                latency = err_latency * rng.uniform(0.98, 1.1)
                errs[action] += n
                errors_now += n
                apdex[action]["frustrated"] += n
            else:
                latency = (server_s * queue + 0.0004) * rng.lognormvariate(0, 0.35)
                for comp, ms in comps.items():
                    grow = queue if comp in ("db", "app") else 1.0
                    timing[action][comp][0] += n
                    timing[action][comp][1] += ms / 1e3 * grow * n * rng.uniform(0.9, 1.1)
                bucket = "satisfied" if latency <= APDEX_T else (
                    "tolerating" if latency <= 4 * APDEX_T else "frustrated")
                apdex[action][bucket] += n
            micros = max(1, int(latency * 1e6))
            hists[action].record_value(micros, n)
            sums[action] += micros * n
            total.record_value(micros, n)
            if uncorrected is not None and total_unc is not None:
                sent = max(1, int(micros / max(1.0, queue / 3)))
                uncorrected[action].record_value(sent, n)
                total_unc.record_value(sent, n)
            second.extend([latency] * min(n, 5))
        second.sort()
        row: dict[str, Any] = {"t": t, "requests": requests, "errors": errors_now,
                               "p50": None, "p95": None, "users": users}
        if second:
            row["p50"] = round(second[len(second) // 2], 6)
            row["p95"] = round(second[min(len(second) - 1, int(len(second) * 0.95))], 6)
        series.append(row)
    total_errors = sum(errs.values())
    total_apdex = {k: sum(apdex[a][k] for a in ACTIONS) for k in ("satisfied", "tolerating",
                                                                   "frustrated")}
    iterations = served_total // 9
    saturated_fraction = 0.0
    if saturated_from is not None:
        busy = sum(1 for r in series if r["users"] >= saturated_from)
        saturated_fraction = round(busy / duration, 3)
    result = {
        "schema": "pytest-minigram/result", "version": 1, "labels": labels,
        "workload": workload, "started_at": 1764338000.0 + seed * 100,
        "duration": float(duration), "apdex_t": APDEX_T, "iterations": iterations,
        "dropped_iterations": 0,
        "total": _stats(total, total_errors, total_apdex, duration, sum(sums.values()),
                        total_unc),
        "actions": {a: _stats(hists[a], errs[a], apdex[a], duration, sums[a],
                              None if uncorrected is None else uncorrected[a])
                    for a in ACTIONS if hists[a].get_total_count()},
        "errors": ({err_kind: {"count": total_errors, "example": err_example}}
                   if total_errors else {}),
        "timeseries": series,
        "server_timing": {a: {c: {"count": v[0], "total": round(v[1], 6)}
                              for c, v in timing[a].items() if v[0]}
                          for a in ACTIONS if any(v[0] for v in timing[a].values())},
        "generator": {"processes": 1, "cpu_mean": round(min(0.95, served_total / duration
                                                            / 260), 3),
                      "cpu_max": 0.99 if saturated_fraction else 0.6,
                      "saturated": saturated_fraction > 0.05,
                      "saturated_fraction": saturated_fraction},
        "server": {"cpu_seconds": round(served_total * sum(TIMING[stage]["feed"].values())
                                        / 1e3 * 0.8, 3)},
    }
    if rate is not None:
        intended = int(rate * duration / 1)
        result["dropped_iterations"] = max(0, intended - served_total)
        result["iterations"] = served_total
    return result


def _slo(result: dict[str, Any], thresholds: list[tuple[str, str, float]]) -> list[dict]:
    out = []
    for text, metric, limit in thresholds:
        measured = result["total"][metric]
        out.append({"threshold": text, "measured": measured, "passed": measured < limit})
    return out


def _test(nodeid: str, stage: str, kind: str, result: dict[str, Any],
          thresholds: list[tuple[str, str, float]],
          breaking: dict[str, int] | None = None) -> dict[str, Any]:
    slo = _slo(result, thresholds)
    entry: dict[str, Any] = {"test": nodeid, "stage": stage, "kind": kind, "result": result,
                             "slo": slo, "verdict": "passed" if all(s["passed"] for s in slo)
                             else "failed"}
    if breaking is not None:
        entry["breaking_point"] = breaking
        entry["verdict"] = "passed"
    return entry


def environment(commit: str, fingerprint: str, stages: list[str]) -> dict[str, Any]:
    """Shaped like pytest_minigram.environment.collect_environment()."""
    return {
        "git": {"commit": commit, "branch": "main", "dirty": False,
                "time": "2025-11-28T13:58:02+00:00", "project": "minigram"},
        "machine": {"node": "ci-runner", "system": "Linux", "release": "6.1.0",
                    "machine": "x86_64", "cpu_model": "AMD EPYC 7B13", "cpu_count": 2,
                    "ram_bytes": 8_331_038_720, "python_implementation": "CPython",
                    "python_version": "3.11.9"},
        "machine_id": "Linux-CPython-3.11-64bit",
        "fingerprint": fingerprint,
        "packages": {"pytest": "9.0.1", "pytest-minigram": "0.1.0", "starlette": "0.46.2",
                     "uvicorn": "0.34.0", "sqlalchemy": "2.0.40", "hdrhistogram": "0.10.8"},
        "stage_config": {s: CONFIGS[s] for s in stages},
    }


SLO_LOAD = [("p95 < 500ms", "p95", 0.5), ("error_rate < 1%", "error_rate", 0.01)]
SLO_STRESS = [("error_rate < 5%", "error_rate", 0.05)]


def make_tests(stages: list[str], *, seed: int = 0, users: int = 20, duration: int = 30,
               families: int = 1, spp: int = 60) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = []
    breaking = {"1": (6, 4, 8), "1.5": (42, 38, 46), "2": (115, 105, 125)}
    for i, stage in enumerate(stages):
        s = seed + i * 10
        for f in range(families):
            suffix = "" if families == 1 else f"_{f:02d}"
            node = f"tests/perf/test_realistic.py::test_realistic{suffix}[{stage}]"
            ramp = 5
            res = simulate(stage, lambda t, ramp=ramp: min(users, max(1, users * (t + 1) // ramp)),
                           duration, seed=s + f, samples_per_second=spp,
                           labels={"test": node, "stage": stage, "journey": "realistic"},
                           workload={"model": "closed", "users": users, "ramp_up": float(ramp),
                                     "duration": float(duration), "iterations": None,
                                     "think_time": [0.5, 1.5], "rate": None, "stages": None})
            tests.append(_test(node, stage, "load", res, SLO_LOAD))
        node = f"tests/perf/test_stress.py::test_stress[{stage}]"
        res = simulate(stage, lambda t: min(200, 1 + t * 200 // 59), 60, seed=s + 1,
                       samples_per_second=spp, saturated_from=170 if stage == "2" else None,
                       labels={"test": node, "stage": stage, "journey": "realistic"},
                       workload={"model": "ramping", "users": 200, "ramp_up": 60.0,
                                 "duration": 60.0, "iterations": None,
                                 "think_time": [0.5, 1.5], "rate": None, "stages": None})
        tests.append(_test(node, stage, "stress", res, SLO_STRESS))
        node = f"tests/perf/test_breaking.py::test_breaking_point[{stage}]"
        bu, lo, hi = breaking[stage]
        res = simulate(stage, lambda t, bu=bu: bu, 20, seed=s + 2, samples_per_second=spp,
                       labels={"test": node, "stage": stage, "journey": "realistic"},
                       workload={"model": "closed", "users": bu, "ramp_up": 0.0,
                                 "duration": 20.0, "iterations": None,
                                 "think_time": [0.5, 1.5], "rate": None, "stages": None})
        tests.append(_test(node, stage, "breaking", res, SLO_LOAD,
                           {"users": bu, "low": lo, "high": hi}))
        node = f"tests/perf/test_feed.py::test_feed_rate[{stage}]"
        res = simulate(stage, lambda t: 40, 20, seed=s + 3, rate=60.0, samples_per_second=spp,
                       labels={"test": node, "stage": stage, "journey": "browse"},
                       workload={"model": "open", "users": 40, "ramp_up": 0.0,
                                 "duration": 20.0, "iterations": None, "think_time": None,
                                 "rate": 60.0, "stages": None})
        tests.append(_test(node, stage, "load", res, SLO_LOAD))
    return tests


def make_run(stages: list[str], *, commit: str, created_at: str,
             fingerprint: str = "5d0c2a9e41b7f386",
             **kwargs: Any) -> dict[str, Any]:
    return {"schema": "pytest-minigram/run", "version": 1, "created_at": created_at,
            "environment": environment(commit, fingerprint, stages),
            "tests": make_tests(stages, **kwargs)}


def main() -> None:
    stages = ["1", "1.5", "2"]
    run = make_run(stages, commit="3f2c9e14b7d0a2c5e8f1b6d4a9c3e7f05b2d8a61",
                   created_at="2025-11-28T14:03:11+00:00")
    base = make_run(["2"], commit="9a1d4c7e2b5f8031d6e9a4c7b2f5e8d1a3c6b9f0",
                    created_at="2025-11-20T09:41:52+00:00", seed=7)
    # What compare.py would say; the significance flags are chosen, the values are read.
    picks = [("test_realistic.py::test_realistic[2]", "p95", True),
             ("test_realistic.py::test_realistic[2]", "throughput", False),
             ("test_stress.py::test_stress[2]", "error_rate", True),
             ("test_feed.py::test_feed_rate[2]", "p99", False)]
    now = {t["test"]: t["result"]["total"] for t in run["tests"]}
    then = {t["test"]: t["result"]["total"] for t in base["tests"]}
    comparison = []
    for name, metric, significant in picks:
        node = "tests/perf/" + name
        b, c = then[node][metric], now[node][metric]
        change = (c - b) / b if b else 0.0
        worse = change < 0 if metric == "throughput" else change > 0
        comparison.append({"test": node, "metric": metric, "baseline": b, "current": c,
                           "change": round(change, 4), "significant": significant,
                           "regression": significant and worse})
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    (out / "baseline.json").write_text(json.dumps(base, indent=1) + "\n")
    (out / "comparison.json").write_text(json.dumps(comparison, indent=1) + "\n")


if __name__ == "__main__":
    main()
