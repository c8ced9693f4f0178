"""Export a run in pytest-benchmark's JSON format, so its ``compare`` command, Bencher's
``python_pytest`` adapter and github-action-benchmark can track Minigram's figures.

One benchmark entry per perf test and stage. A "round" is one request: the stats are the
request latencies in seconds, taken from the whole-run HdrHistogram (so they carry its
resolution of 3 significant digits), and ``ops`` is 1 / mean latency as pytest-benchmark
defines it. The load figures that have no pytest-benchmark field (throughput, error rate,
p95, p99, apdex, verdict) go into ``extra_info``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["FORMAT_VERSION", "benchmark_stats", "to_benchmark_json", "write_benchmark_json"]

FORMAT_VERSION = "4.0.0"  # the pytest-benchmark release whose file layout this follows


def benchmark_stats(histogram_blob: str) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block from an encoded histogram of microseconds."""
    hist = HdrHistogram.decode(histogram_blob)
    count = hist.get_total_count()
    if not count:
        raise ValueError("empty histogram: no request was recorded")
    values = [(item.value_iterated_to / 1e6, item.count_at_value_iterated_to)
              for item in hist.get_recorded_iterator()]
    pct = hist.get_percentile_to_value_dict([25.0, 50.0, 75.0])
    q1, median, q3 = pct[25.0] / 1e6, pct[50.0] / 1e6, pct[75.0] / 1e6
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    mean, stddev = hist.get_mean_value() / 1e6, hist.get_stddev() / 1e6
    inside = [v for v, _ in values if low <= v <= high]
    iqr_outliers = sum(n for v, n in values if v < low or v > high)
    stddev_outliers = sum(n for v, n in values if v < mean - stddev or v > mean + stddev)
    return {
        "min": hist.get_min_value() / 1e6,
        "max": hist.get_max_value() / 1e6,
        "mean": mean,
        "stddev": stddev,
        "rounds": count,
        "median": median,
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": min(inside) if inside else q1,
        "hd15iqr": max(inside) if inside else q3,
        "ops": 1 / mean if mean else 0.0,
        "total": mean * count,
        "iterations": 1,
    }


def _machine_info(env: dict[str, Any]) -> dict[str, Any]:
    m = env.get("machine") or {}
    return {
        "node": m.get("node"),
        "processor": m.get("cpu_model"),
        "machine": m.get("machine"),
        "python_compiler": m.get("python_compiler"),
        "python_implementation": m.get("python_implementation"),
        "python_implementation_version": m.get("python_version"),
        "python_version": m.get("python_version"),
        "python_build": m.get("python_build"),
        "release": m.get("release"),
        "system": m.get("system"),
        "cpu": {"brand_raw": m.get("cpu_model"), "count": m.get("cpu_count"),
                "arch": m.get("machine")},
        "minigram_fingerprint": env.get("fingerprint"),
    }


def _commit_info(env: dict[str, Any]) -> dict[str, Any]:
    git = env.get("git") or {}
    return {
        "id": git.get("commit") or "unversioned",
        "time": git.get("time"),
        "author_time": git.get("time"),
        "dirty": bool(git.get("dirty")),
        "project": git.get("project"),
        "branch": git.get("branch") or "(unknown)",
    }


def _entry(test: dict[str, Any]) -> dict[str, Any]:
    result, stage = test["result"], test["stage"]
    total = result["total"]
    func = test["test"].rsplit("::", 1)[-1]
    workload = result.get("workload") or {}
    return {
        "group": f"stage {stage}",
        "name": f"{func} (stage {stage})",
        "fullname": f"{test['test']} (stage {stage})",
        "params": {"stage": stage},
        "param": stage,
        "extra_info": {
            "requests": total.get("count"),
            "errors": total.get("errors"),
            "throughput": total.get("throughput"),
            "error_rate": total.get("error_rate"),
            "p90": total.get("p90"),
            "p95": total.get("p95"),
            "p99": total.get("p99"),
            "apdex": total.get("apdex_score"),
            "duration": result.get("duration"),
            "model": workload.get("model"),
            "users": workload.get("users"),
            "rate": workload.get("rate"),
            "verdict": test.get("verdict"),
        },
        "options": {"timer": "hdrhistogram", "disable_gc": False, "min_rounds": 1,
                    "max_time": result.get("duration"), "min_time": 0.0, "warmup": False},
        "stats": benchmark_stats(total["histogram"]),
    }


def to_benchmark_json(run: dict[str, Any]) -> dict[str, Any]:
    """A run document (docs/results-file.md) as pytest-benchmark's output document.

    Tests without a result or without a recorded request are left out, as pytest-benchmark
    leaves out benchmarks that errored.
    """
    env = run.get("environment") or {}
    benchmarks = [_entry(t) for t in run.get("tests", [])
                  if t.get("result") and t["result"].get("total", {}).get("count")]
    return {
        "machine_info": _machine_info(env),
        "commit_info": _commit_info(env),
        "benchmarks": benchmarks,
        "datetime": run.get("created_at"),
        "version": FORMAT_VERSION,
    }


def write_benchmark_json(run: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_benchmark_json(run), indent=4) + "\n", encoding="utf-8")
    return p
