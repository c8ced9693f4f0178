"""The outcome of a load run: statistics backed by HdrHistograms, JSON round trip, exact merge.

See docs/result-schema.md for the serialized shape. Histograms record microseconds.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from pytest_minigram.metrics import percentile_of

__all__ = [
    "HIGHEST_US",
    "SCHEMA",
    "VERSION",
    "ActionStats",
    "Result",
    "Timing",
    "concat",
    "format_apdex",
    "merge",
    "new_histogram",
]

SCHEMA = "pytest-minigram/result"
VERSION = 1
HIGHEST_US = 3_600_000_000
_SUMMARY_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


_MIDPOINTS: list[float] = []  # per counts index of new_histogram(), its values' midpoint (µs)


def cumulative_counts(hist: HdrHistogram, bounds: Sequence[float]) -> tuple[list[int], float]:
    """How many values of ``hist`` (one of `new_histogram`'s, in µs) lie at or below each
    bound (seconds), and the sum of all its values (seconds). Reads only the counts between
    the smallest and the largest value (a millisecond for a typical load's spread)."""
    if not hist.get_total_count():
        return [0] * len(bounds), 0.0
    if not _MIDPOINTS:
        _MIDPOINTS.extend(hist._hdr_median_equiv_value(hist.get_value_from_index(i))
                          for i in range(hist.counts_len))
    lo = hist._counts_index_for(hist.get_min_value())
    hi = hist._counts_index_for(hist.get_max_value())
    counts = hist.counts[lo:hi + 1]
    total = sum(map(operator.mul, counts, _MIDPOINTS[lo:hi + 1])) / 1e6
    running = list(itertools.accumulate(counts))
    out = []
    for bound in bounds:
        idx = hist._counts_index_for(int(bound * 1e6))
        out.append(0 if idx < lo else running[min(idx, hi) - lo])
    return out, total


def _decode(blob: str | None) -> HdrHistogram | None:
    if blob is None:
        return None
    hist = new_histogram()
    _add(hist, HdrHistogram.decode(blob))
    return hist


def _add(into: HdrHistogram, other: HdrHistogram) -> None:
    # hdrh's add() takes min(…, other.get_min_value()) and an empty histogram reports 0.
    if other.get_total_count():
        into.add(other)


def _encode(hist: HdrHistogram) -> str:
    blob = hist.encode()
    return blob.decode("ascii") if isinstance(blob, bytes) else blob


def format_apdex(score: float | None, t: float) -> str:
    """Apdex the conventional way: ``0.91 [0.5s]``."""
    value = "n/a" if score is None else f"{score:.2f}"
    return f"{value} [{t:g}s]"


class Timing:
    """Durations of one kind of connection set-up (TCP connect, TLS handshake) in a run."""

    def __init__(self) -> None:
        self.histogram = new_histogram()
        self.count = 0
        self.total = 0.0  # seconds, exact (the histogram rounds)

    def record(self, seconds: float) -> None:
        us = min(max(1, int(seconds * 1e6)), HIGHEST_US)
        self.histogram.record_value(us)
        self.count += 1
        self.total += seconds

    def percentile(self, q: float) -> float:
        return self.histogram.get_value_at_percentile(q) / 1e6 if self.count else math.nan

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "total": self.total,
                               "histogram": _encode(self.histogram)}
        if self.count:
            out.update(mean=self.mean, p50=self.percentile(50), p95=self.percentile(95),
                       p99=self.percentile(99), max=self.histogram.get_max_value() / 1e6)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Timing:
        timing = cls()
        if d:
            timing.histogram = _decode(d.get("histogram")) or new_histogram()
            timing.count = int(d.get("count", 0))
            timing.total = float(d.get("total", 0.0))
        return timing

    def add(self, other: Timing) -> None:
        _add(self.histogram, other.histogram)
        self.count += other.count
        self.total += other.total


class ActionStats:
    """Counts and latency histograms for one action (or for all requests).

    ``expected`` counts, by status, the answers outside 2xx/3xx that the journey declared
    expected (``expect=``): they are in ``count`` and the histograms but not in ``errors``.
    """

    def __init__(self, open_model: bool = False) -> None:
        self.histogram = new_histogram()
        self.uncorrected: HdrHistogram | None = new_histogram() if open_model else None
        self.count = 0
        self.errors = 0
        self.expected: dict[int, int] = {}
        # satisfied, tolerating, frustrated
        self.apdex_counts = [0, 0, 0]
        self.duration = 0.0
        self._cache: dict[float, float] = {}

    # --- derived figures (seconds) ---
    def percentile(self, q: float, *, uncorrected: bool = False) -> float:
        if not self.count:
            return math.nan
        hist = self.uncorrected if uncorrected and self.uncorrected is not None else self.histogram
        if hist is not self.histogram:
            return float(hist.get_value_at_percentile(q)) / 1e6
        value = self._cache.get(q)
        if value is None:
            value = self._cache[q] = float(hist.get_value_at_percentile(q)) / 1e6
        return value

    def _fill_cache(self) -> None:
        missing = [q for q in _SUMMARY_PERCENTILES if q not in self._cache]
        if missing and self.count:
            for q, v in self.histogram.get_percentile_to_value_dict(missing).items():
                self._cache[q] = v / 1e6

    def invalidate(self) -> None:
        self._cache.clear()

    def count_expected(self, status: int) -> None:
        self.expected[status] = self.expected.get(status, 0) + 1

    p50 = property(lambda self: self.percentile(50.0))
    p90 = property(lambda self: self.percentile(90.0))
    p95 = property(lambda self: self.percentile(95.0))
    p99 = property(lambda self: self.percentile(99.0))
    p99_9 = property(lambda self: self.percentile(99.9))

    @property
    def min(self) -> float:
        return self.histogram.get_min_value() / 1e6 if self.count else math.nan

    @property
    def max(self) -> float:
        return self.histogram.get_max_value() / 1e6 if self.count else math.nan

    @property
    def mean(self) -> float:
        return self.histogram.get_mean_value() / 1e6 if self.count else math.nan

    @property
    def throughput(self) -> float:
        return self.count / self.duration if self.duration > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def apdex(self) -> float | None:
        s, t, f = self.apdex_counts
        total = s + t + f
        return (s + t / 2) / total if total else None

    # --- serialization ---
    def to_dict(self) -> dict[str, Any]:
        self._fill_cache()
        s, t, f = self.apdex_counts
        out: dict[str, Any] = {
            "count": self.count,
            "errors": self.errors,
            "histogram": _encode(self.histogram),
            "uncorrected_histogram": None if self.uncorrected is None else _encode(
                self.uncorrected
            ),
            "apdex": {"satisfied": s, "tolerating": t, "frustrated": f},
            "expected": {str(k): v for k, v in sorted(self.expected.items())},
        }
        if self.count:
            out.update(
                min=self.min, mean=self.mean, max=self.max, p50=self.p50, p90=self.p90,
                p95=self.p95, p99=self.p99, p99_9=self.p99_9,
            )
        out.update(throughput=self.throughput, error_rate=self.error_rate,
                   apdex_score=self.apdex)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], duration: float) -> ActionStats:
        stats = cls()
        stats.histogram = _decode(d["histogram"]) or new_histogram()
        stats.uncorrected = _decode(d.get("uncorrected_histogram"))
        stats.count = int(d["count"])
        stats.errors = int(d["errors"])
        stats.expected = {int(k): int(v) for k, v in (d.get("expected") or {}).items()}
        a = d["apdex"]
        stats.apdex_counts = [int(a["satisfied"]), int(a["tolerating"]), int(a["frustrated"])]
        stats.duration = duration
        return stats

    def add(self, other: ActionStats) -> None:
        _add(self.histogram, other.histogram)
        if other.uncorrected is not None:
            if self.uncorrected is None:
                self.uncorrected = new_histogram()
            _add(self.uncorrected, other.uncorrected)
        self.count += other.count
        self.errors += other.errors
        for status, n in other.expected.items():
            self.expected[status] = self.expected.get(status, 0) + n
        self.apdex_counts = [a + b for a, b in zip(self.apdex_counts, other.apdex_counts,
                                                     strict=True)]
        self._cache.clear()




@dataclass
class Result:
    """One load run (or the exact merge of several partial runs)."""

    workload: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    duration: float = 0.0
    apdex_t: float = 0.5
    iterations: int = 0
    dropped_iterations: int = 0
    total: ActionStats = field(default_factory=ActionStats)
    actions: dict[str, ActionStats] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeseries: list[dict[str, Any]] = field(default_factory=list)
    server_timing: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=lambda: {
        "processes": 1, "cpu_mean": 0.0, "cpu_max": 0.0, "saturated": False,
        "saturated_fraction": 0.0,
    })
    interrupted: bool = False
    # sequential rounds (see concat): index, offset and duration in seconds, target
    rounds: list[dict[str, Any]] = field(default_factory=list)
    # connection set-up, not part of any request's latency
    connect: Timing = field(default_factory=Timing)
    tls: Timing = field(default_factory=Timing)

    # --- the figures of all requests ---
    count = property(lambda self: self.total.count)
    throughput = property(lambda self: self.total.throughput)
    error_rate = property(lambda self: self.total.error_rate)
    apdex = property(lambda self: self.total.apdex)
    p50 = property(lambda self: self.total.p50)
    p90 = property(lambda self: self.total.p90)
    p95 = property(lambda self: self.total.p95)
    p99 = property(lambda self: self.total.p99)
    p99_9 = property(lambda self: self.total.p99_9)
    min = property(lambda self: self.total.min)
    mean = property(lambda self: self.total.mean)
    max = property(lambda self: self.total.max)

    @property
    def saturated(self) -> bool:
        return bool(self.generator.get("saturated"))

    @property
    def apdex_label(self) -> str:
        return format_apdex(self.apdex, self.apdex_t)

    def stats(self, action: str | None = None) -> ActionStats:
        if action is None:
            return self.total
        try:
            return self.actions[action]
        except KeyError:
            known = ", ".join(sorted(self.actions)) or "none"
            raise KeyError(f"no request recorded for action {action!r} (known: {known})") from None

    def percentile(self, q: float, action: str | None = None, *,
                   uncorrected: bool = False) -> float:
        return self.stats(action).percentile(q, uncorrected=uncorrected)

    def metric(self, name: str, action: str | None = None) -> float:
        """A named figure (see docs/result-schema.md); times in seconds, rates as fractions."""
        if name == "dropped_iterations" and action is None:
            return float(self.dropped_iterations)  # open model: arrivals never started
        stats = self.stats(action)
        if stats.count == 0 and action is not None:
            raise KeyError(f"no request recorded for action {action!r}")
        if name in ("count", "errors"):
            return float(getattr(stats, name))
        if name in ("throughput", "error_rate", "min", "mean", "max"):
            return float(getattr(stats, name))
        if name == "apdex":
            score = stats.apdex
            return math.nan if score is None else score
        q = percentile_of(name)
        if q is not None:
            return stats.percentile(q)
        if re.fullmatch(r"p\d+(?:[._]\d+)?", name):
            raise KeyError(f"percentile out of range: {name!r}")
        raise KeyError(
            f"unknown metric {name!r}; known: count, errors, dropped_iterations, throughput, "
            "error_rate, apdex, "
            "min, mean, max, p<q> (e.g. p95, p99.9)"
        )

    # --- serialization ---
    def _set_durations(self) -> None:
        for stats in (self.total, *self.actions.values()):
            stats.duration = self.duration

    def to_dict(self) -> dict[str, Any]:
        self._set_durations()
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "labels": dict(self.labels),
            "workload": dict(self.workload),
            "started_at": self.started_at,
            "duration": self.duration,
            "apdex_t": self.apdex_t,
            "iterations": self.iterations,
            "dropped_iterations": self.dropped_iterations,
            "interrupted": self.interrupted,
            "total": self.total.to_dict(),
            "actions": {name: s.to_dict() for name, s in sorted(self.actions.items())},
            "errors": {k: dict(v) for k, v in self.errors.items()},
            "timeseries": [dict(row) for row in self.timeseries],
            "server_timing": {a: {c: dict(v) for c, v in comps.items()}
                              for a, comps in self.server_timing.items()},
            "generator": dict(self.generator),
            "rounds": [dict(r) for r in self.rounds],
            "connections": {"connect": self.connect.to_dict(), "tls": self.tls.to_dict()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a pytest-minigram result (schema={d.get('schema')!r})")
        if d.get("version") != VERSION:
            raise ValueError(f"unsupported result version {d.get('version')!r}, "
                             f"this reader knows {VERSION}")
        duration = float(d["duration"])
        return cls(
            workload=dict(d.get("workload") or {}),
            labels={str(k): str(v) for k, v in (d.get("labels") or {}).items()},
            started_at=float(d["started_at"]),
            duration=duration,
            apdex_t=float(d["apdex_t"]),
            iterations=int(d["iterations"]),
            dropped_iterations=int(d["dropped_iterations"]),
            total=ActionStats.from_dict(d["total"], duration),
            actions={k: ActionStats.from_dict(v, duration) for k, v in d["actions"].items()},
            errors={k: dict(v) for k, v in d.get("errors", {}).items()},
            timeseries=[dict(r) for r in d.get("timeseries", [])],
            server_timing={a: {c: dict(v) for c, v in comps.items()}
                           for a, comps in d.get("server_timing", {}).items()},
            generator=dict(d.get("generator") or {}),
            interrupted=bool(d.get("interrupted", False)),
            rounds=[dict(r) for r in d.get("rounds") or []],
            connect=Timing.from_dict((d.get("connections") or {}).get("connect")),
            tls=Timing.from_dict((d.get("connections") or {}).get("tls")),
        )


def merge(results: Iterable[Result]) -> Result:
    """Combine partial results exactly: histograms and counters are added, never averaged."""
    parts = list(results)
    if not parts:
        raise ValueError("merge() needs at least one result")
    start = min(r.started_at for r in parts)
    end = max(r.started_at + r.duration for r in parts)
    out = Result(
        workload=_merge_workload([r.workload for r in parts]),
        labels=_common_labels([r.labels for r in parts]),
        started_at=start,
        duration=end - start,
        apdex_t=parts[0].apdex_t,
        interrupted=any(r.interrupted for r in parts),
    )
    if any(r.apdex_t != out.apdex_t for r in parts):
        raise ValueError("cannot merge results recorded with different apdex T")
    for r in parts:
        out.iterations += r.iterations
        out.dropped_iterations += r.dropped_iterations
        out.total.add(r.total)
        out.connect.add(r.connect)
        out.tls.add(r.tls)
        for name, stats in r.actions.items():
            out.actions.setdefault(name, ActionStats()).add(stats)
        for kind, info in r.errors.items():
            mine = out.errors.setdefault(kind, {"count": 0, "example": info.get("example", "")})
            mine["count"] += int(info["count"])
        for action, comps in r.server_timing.items():
            into = out.server_timing.setdefault(action, {})
            for comp, agg in comps.items():
                slot = into.setdefault(comp, {"count": 0, "total": 0.0})
                slot["count"] += agg["count"]
                slot["total"] += agg["total"]
    out.timeseries = _merge_timeseries(parts, start)
    gens = [r.generator for r in parts]
    out.generator = {
        "processes": sum(int(g.get("processes", 1)) for g in gens),
        "cpu_mean": sum(float(g.get("cpu_mean", 0.0)) for g in gens) / len(gens),
        "cpu_max": max(float(g.get("cpu_max", 0.0)) for g in gens),
        "saturated": any(bool(g.get("saturated")) for g in gens),
        "saturated_fraction": max(float(g.get("saturated_fraction", 0.0)) for g in gens),
        "loop_lag_max": max(float(g.get("loop_lag_max", 0.0)) for g in gens),
    }
    out._set_durations()
    return out


def concat(rounds: Sequence[Result], targets: Sequence[str] = ()) -> Result:
    """Join the rounds of one workload, run one after the other, into one result.

    Counters and histograms add exactly, as in :func:`merge`; the duration is the sum of the
    rounds' (the pauses between them are not load). The time series runs on: round ``r``'s
    windows are shifted by the whole seconds of the rounds before it and tagged
    ``"round": r``, and ``rounds`` records each round's offset, duration and target, so that
    the regression gate can tell the rounds apart (each may have run on its own server
    process).
    """
    parts = list(rounds)
    if not parts:
        raise ValueError("concat() needs at least one result")
    out = merge(parts)
    out.workload = dict(parts[0].workload)
    out.labels = dict(parts[0].labels)
    out.started_at = parts[0].started_at
    out.duration = sum(r.duration for r in parts)
    out.generator["processes"] = max(int(r.generator.get("processes", 1)) for r in parts)
    out.timeseries = []
    out.rounds = []
    offset = 0
    for index, part in enumerate(parts):
        out.timeseries += [{**row, "t": int(row["t"]) + offset, "round": index}
                           for row in part.timeseries]
        round_info: dict[str, Any] = {"index": index, "offset": offset,
                                      "duration": part.duration}
        if index < len(targets):
            round_info["target"] = targets[index]
        out.rounds.append(round_info)
        offset += math.ceil(part.duration)
    out._set_durations()
    return out


def _merge_timeseries(parts: list[Result], start: float) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    hists: dict[int, HdrHistogram] = {}
    for r in parts:
        offset = round(r.started_at - start)
        for row in r.timeseries:
            t = int(row["t"]) + offset
            into = rows.setdefault(t, {"t": t, "requests": 0, "errors": 0, "users": 0})
            into["requests"] += row["requests"]
            into["errors"] += row["errors"]
            into["users"] += row["users"]
            if row.get("histogram"):
                hist = hists.setdefault(t, new_histogram())
                _add(hist, HdrHistogram.decode(row["histogram"]))
    out = []
    for t in sorted(rows):
        row = rows[t]
        hist = hists.get(t)
        if hist is not None and hist.get_total_count():
            pct = hist.get_percentile_to_value_dict([50.0, 95.0])
            row["p50"], row["p95"] = pct[50.0] / 1e6, pct[95.0] / 1e6
            row["histogram"] = _encode(hist)
        else:
            row["p50"] = row["p95"] = None
            row["histogram"] = None
        out.append(row)
    return out


def _common_labels(labels: list[dict[str, str]]) -> dict[str, str]:
    first = labels[0]
    return {k: v for k, v in first.items() if all(other.get(k) == v for other in labels[1:])}


def _merge_workload(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Undo ``Workload.split``: users and rates add up, the rest is shared."""
    if not parts or not parts[0]:
        return {}
    out = dict(parts[0])
    for key in ("users", "max_users"):
        if all(isinstance(p.get(key), int) for p in parts):
            out[key] = sum(p[key] for p in parts)
    if all(isinstance(p.get("rate"), int | float) for p in parts):
        out["rate"] = sum(p["rate"] for p in parts)
    if all(p.get("stages") for p in parts):
        out["stages"] = [
            [sum(p["stages"][i][0] for p in parts), parts[0]["stages"][i][1]]
            for i in range(len(parts[0]["stages"]))
        ]
    return out
