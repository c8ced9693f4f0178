"""Numbers and chart series read from Result JSON (docs/result-schema.md).

Everything here reads plain dicts and returns new plain values; nothing is written back.
Percentiles come from the derived keys when a result carries them and otherwise from the
HdrHistogram blob, so a result written without derived keys still renders.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from hdrh.histogram import HdrHistogram

Json = dict[str, Any]

_DERIVED = {50.0: "p50", 90.0: "p90", 95.0: "p95", 99.0: "p99", 99.9: "p99_9"}
# The HdrHistogram "nines" plot: percentiles spaced evenly on a log scale of 1 / (1 - q).
DISTRIBUTION_PERCENTILES: tuple[float, ...] = (
    0.0, 25.0, 50.0, 68.4, 75.0, 82.2, 90.0, 94.4, 96.8, 98.2, 99.0, 99.44, 99.68,
    99.82, 99.9, 99.944, 99.968, 99.982, 99.99, 99.9944, 99.9968, 99.9982, 99.999,
)
COMPONENT_ORDER = ("db", "cache", "hash", "app")
INCLUSIVE_COMPONENTS = frozenset({"total"})  # Server-Timing entries that contain the others


@lru_cache(maxsize=2048)
def _decode(blob: str) -> HdrHistogram:
    return HdrHistogram.decode(blob)


def histogram(stats: Mapping[str, Any], key: str = "histogram") -> HdrHistogram | None:
    blob = stats.get(key)
    if not blob:
        return None
    return _decode(blob if isinstance(blob, str) else bytes(blob).decode("ascii"))


def count(stats: Mapping[str, Any]) -> int:
    return int(stats.get("count") or 0)


def percentile(stats: Mapping[str, Any], q: float) -> float | None:
    """The q-th percentile in seconds, or None when nothing was recorded."""
    key = _DERIVED.get(q)
    if key is not None and isinstance(stats.get(key), int | float):
        return float(stats[key])
    hist = histogram(stats)
    if hist is None or hist.get_total_count() == 0:
        return None
    return hist.get_value_at_percentile(q) / 1e6


def mean(stats: Mapping[str, Any]) -> float | None:
    if isinstance(stats.get("mean"), int | float):
        return float(stats["mean"])
    hist = histogram(stats)
    if hist is None or hist.get_total_count() == 0:
        return None
    return hist.get_mean_value() / 1e6


def maximum(stats: Mapping[str, Any]) -> float | None:
    if isinstance(stats.get("max"), int | float):
        return float(stats["max"])
    hist = histogram(stats)
    if hist is None or hist.get_total_count() == 0:
        return None
    return hist.get_max_value() / 1e6


def error_rate(stats: Mapping[str, Any]) -> float | None:
    n = count(stats)
    return None if n == 0 else int(stats.get("errors") or 0) / n


def throughput(stats: Mapping[str, Any], duration: float) -> float | None:
    if isinstance(stats.get("throughput"), int | float):
        return float(stats["throughput"])
    return None if duration <= 0 else count(stats) / duration


def apdex(stats: Mapping[str, Any]) -> float | None:
    parts = stats.get("apdex") or {}
    total = sum(int(parts.get(k) or 0) for k in ("satisfied", "tolerating", "frustrated"))
    if total == 0:
        return None
    return (int(parts.get("satisfied") or 0) + int(parts.get("tolerating") or 0) / 2) / total


def distribution(stats: Mapping[str, Any], key: str = "histogram") -> list[list[float]]:
    """Percentile distribution as [[1 / (1 - q), milliseconds], ...] for a log-log chart.

    Points beyond what the sample size can resolve (1 / (1 - q) > count) are left out,
    and the maximum is added as the last point.
    """
    hist = histogram(stats, key)
    if hist is None:
        return []
    n = hist.get_total_count()
    if n == 0:
        return []
    wanted = [q for q in DISTRIBUTION_PERCENTILES if 1 / (1 - q / 100) <= n]
    values = hist.get_percentile_to_value_dict(wanted)
    points = [[round(1 / (1 - q / 100), 3), round(values[q] / 1e3, 3)] for q in wanted]
    points.append([float(n), round(hist.get_max_value() / 1e3, 3)])
    return points


def _mean_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def downsample(rows: Sequence[Mapping[str, Any]], max_points: int) -> Json:
    """Per-second timeseries -> at most max_points buckets of parallel arrays.

    Requests and errors are summed (so rates stay exact), p95 takes the bucket's worst
    second (a spike must not be averaged away), p50 the mean and users the maximum.
    """
    ordered = sorted(rows, key=lambda r: float(r.get("t", 0)))
    size = max(1, math.ceil(len(ordered) / max(1, max_points)))
    out: Json = {"t": [], "rps": [], "error_rate": [], "p50": [], "p95": [], "users": []}
    for start in range(0, len(ordered), size):
        chunk = ordered[start : start + size]
        requests = sum(int(r.get("requests") or 0) for r in chunk)
        errors = sum(int(r.get("errors") or 0) for r in chunk)
        p95s = [float(r["p95"]) for r in chunk if r.get("p95") is not None]
        users = [float(r["users"]) for r in chunk if r.get("users") is not None]
        p50 = _mean_of(float(r["p50"]) if r.get("p50") is not None else None for r in chunk)
        out["t"].append(round(float(chunk[0].get("t", 0)), 1))
        out["rps"].append(round(requests / len(chunk), 2))
        out["error_rate"].append(round(errors / requests, 4) if requests else None)
        out["p50"].append(None if p50 is None else round(p50 * 1e3, 2))
        out["p95"].append(round(max(p95s) * 1e3, 2) if p95s else None)
        out["users"].append(max(users) if users else None)
    return out


def by_users(results: Iterable[Mapping[str, Any]], max_points: int = 40) -> list[Json]:
    """Error rate and throughput per active-user level, pooled over the given results.

    Each timeseries row is one second at a known number of users, so pooling rows of all
    stress and breaking-point runs of a stage gives an error-rate-against-users curve.
    """
    levels: dict[float, list[int]] = {}
    for result in results:
        for row in result.get("timeseries") or ():
            users = row.get("users")
            requests = int(row.get("requests") or 0)
            if users is None or users <= 0 or requests == 0:
                continue  # users 0: the requests in flight completing after the users stopped
            acc = levels.setdefault(float(users), [0, 0, 0])
            acc[0] += requests
            acc[1] += int(row.get("errors") or 0)
            acc[2] += 1
    keys = sorted(levels)
    size = max(1, math.ceil(len(keys) / max(1, max_points)))
    points: list[Json] = []
    for start in range(0, len(keys), size):
        group = keys[start : start + size]
        requests = sum(levels[k][0] for k in group)
        errors = sum(levels[k][1] for k in group)
        seconds = sum(levels[k][2] for k in group)
        users = sum(k * levels[k][0] for k in group) / requests
        points.append({
            "users": round(users, 1),
            "requests": requests,
            "error_rate": round(errors / requests, 4),
            "rps": round(requests / seconds, 2),
        })
    return points


def server_timing(result: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Mean milliseconds per request for each action and Server-Timing component.

    A component's total is divided by the largest count among the action's components,
    i.e. by the number of requests that sent a Server-Timing header at all. Only the
    exclusive components are kept (a ``total`` entry would count everything twice).
    """
    out: dict[str, dict[str, float]] = {}
    for action, all_comps in (result.get("server_timing") or {}).items():
        comps = {k: v for k, v in all_comps.items() if k not in INCLUSIVE_COMPONENTS}
        requests = max((int(c.get("count") or 0) for c in all_comps.values()), default=0)
        if requests == 0:
            continue
        out[action] = {
            name: round(float(c.get("total") or 0) / requests * 1e3, 3)
            for name, c in sorted(comps.items(), key=lambda kv: component_rank(kv[0]))
        }
    return out


def component_rank(name: str) -> tuple[int, str]:
    return (COMPONENT_ORDER.index(name) if name in COMPONENT_ORDER else len(COMPONENT_ORDER), name)
