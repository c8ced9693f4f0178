"""Recording of samples into HdrHistograms: the engine's hot path.

``Recorder.record`` is called once per request. It computes the histogram bucket once and
increments every histogram the sample belongs to (action, total, current second, and in the
open model their uncorrected twins), which is several times cheaper than
``HdrHistogram.record_value`` per histogram. ``tests/unit/test_load_recorder.py`` checks that
it fills the counts exactly as ``record_value`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from pytest_minigram.load.result import (
    HIGHEST_US,
    ActionStats,
    Result,
    cumulative_counts,
    new_histogram,
)

__all__ = ["Progress", "Recorder", "parse_server_timing"]

_PROTO = new_histogram()
_UNIT = _PROTO.unit_magnitude
_HALF_MAG = _PROTO.sub_bucket_half_count_magnitude
_HALF = _PROTO.sub_bucket_half_count
_MASK = _PROTO.sub_bucket_mask
_SHIFT_BASE = _UNIT + _HALF_MAG + 1
del _PROTO


def bucket_index(value: int) -> int:
    """Index into ``HdrHistogram.counts`` for a value (same as hdrh's ``_counts_index_for``)."""
    bucket = (value | _MASK).bit_length() - _SHIFT_BASE
    return int(((bucket + 1) << _HALF_MAG) + (value >> (bucket + _UNIT)) - _HALF)


def _bump(hist: HdrHistogram, idx: int, value: int) -> None:
    hist.counts[idx] += 1
    hist.total_count += 1
    if value < hist.min_value:
        hist.min_value = value
    if value > hist.max_value:
        hist.max_value = value


@dataclass(frozen=True, slots=True)
class Progress:
    """Delivered to ``on_progress`` once a second."""

    elapsed: float
    users: int
    rps: float
    errors: int
    p95: float | None
    requests: int = 0


def parse_server_timing(value: bytes) -> list[tuple[str, float]]:
    """``db;dur=1.2;desc="x", app;dur=3`` -> [("db", 0.0012), ("app", 0.003)] (seconds)."""
    out = []
    for metric in value.split(b","):
        parts = metric.split(b";")
        name = parts[0].strip()
        if not name:
            continue
        for param in parts[1:]:
            key, _, val = param.strip().partition(b"=")
            if key.lower() == b"dur":
                try:
                    out.append((name.decode("latin-1"), float(val.strip(b'"')) / 1000.0))
                except ValueError:
                    pass
                break
    return out


class Recorder:
    """Accumulates everything a ``Result`` needs while a run is going on."""

    def __init__(self, apdex_t: float = 0.5, open_model: bool = False,
                 latency_bounds: tuple[float, ...] | None = None) -> None:
        self.apdex_t = apdex_t
        self.latency_bounds = latency_bounds
        self._t_us = int(apdex_t * 1e6)
        self._4t_us = 4 * self._t_us
        self.open_model = open_model
        self.total = ActionStats(open_model)
        self.actions: dict[str, ActionStats] = {}
        self.errors: dict[str, dict[str, Any]] = {}
        self.server_timing: dict[str, dict[str, dict[str, float]]] = {}
        self.timeseries: list[dict[str, Any]] = []
        self.iterations = 0
        self.dropped_iterations = 0
        self.started = time.time()
        self._second = new_histogram()
        self._sec_requests = 0
        self._sec_errors = 0
        self._delta_base: dict[str, tuple[int, int]] = {}  # per action, at the last delta
        self._dropped_base = 0  # dropped iterations at the last delta
        self._latency_base: dict[str, tuple[list[int], float]] = {}  # per action: le, sum
        self._hot: dict[str, tuple[ActionStats, tuple[HdrHistogram, ...],
                                   tuple[HdrHistogram, ...]]] = {}

    def _action(self, name: str) -> tuple[ActionStats, tuple[HdrHistogram, ...],
                                           tuple[HdrHistogram, ...]]:
        stats = self.actions[name] = ActionStats(self.open_model)
        corrected = (stats.histogram, self.total.histogram)
        uncorrected: tuple[HdrHistogram, ...] = ()
        if stats.uncorrected is not None and self.total.uncorrected is not None:
            uncorrected = (stats.uncorrected, self.total.uncorrected)
        entry = self._hot[name] = (stats, corrected, uncorrected)
        return entry

    def record(self, name: str, latency: float, lag: float, failed: bool,
               server_timing: bytes | None = None) -> None:
        """One finished request. ``lag`` is how late its iteration started (open model)."""
        entry = self._hot.get(name) or self._action(name)
        stats, corrected, uncorrected = entry
        us = int((latency + lag) * 1e6)
        if us > HIGHEST_US:
            us = HIGHEST_US
        idx = bucket_index(us)
        for hist in corrected:
            _bump(hist, idx, us)
        _bump(self._second, idx, us)
        if uncorrected:
            raw = int(latency * 1e6)
            if raw > HIGHEST_US:
                raw = HIGHEST_US
            ridx = bucket_index(raw)
            for hist in uncorrected:
                _bump(hist, ridx, raw)
        stats.count += 1
        self.total.count += 1
        self._sec_requests += 1
        if failed:
            stats.errors += 1
            self.total.errors += 1
            self._sec_errors += 1
            slot = 2
        elif us <= self._t_us:
            slot = 0
        elif us <= self._4t_us:
            slot = 1
        else:
            slot = 2
        stats.apdex_counts[slot] += 1
        self.total.apdex_counts[slot] += 1
        if server_timing is not None:
            self._server_timing(name, server_timing)

    def _server_timing(self, name: str, value: bytes) -> None:
        comps = self.server_timing.get(name)
        if comps is None:
            comps = self.server_timing[name] = {}
        for comp, dur in parse_server_timing(value):
            slot = comps.get(comp)
            if slot is None:
                slot = comps[comp] = {"count": 0, "total": 0.0}
            slot["count"] += 1
            slot["total"] += dur

    def error(self, kind: str, example: Callable[[], str] | str) -> None:
        """Count an error of ``kind``; the example text is built only for the first one."""
        info = self.errors.get(kind)
        if info is None:
            text = example() if callable(example) else example
            self.errors[kind] = {"count": 1, "example": text[:500]}
        else:
            info["count"] += 1

    def tick(self, users: int) -> dict[str, Any]:
        """Close the current one-second row of the time series and return it."""
        hist = self._second
        row: dict[str, Any] = {
            "t": len(self.timeseries),
            "requests": self._sec_requests,
            "errors": self._sec_errors,
            "p50": None,
            "p95": None,
            "users": users,
            "histogram": None,
        }
        if hist.total_count:
            pct = hist.get_percentile_to_value_dict([50.0, 95.0])
            row["p50"], row["p95"] = pct[50.0] / 1e6, pct[95.0] / 1e6
            blob = hist.encode()
            row["histogram"] = blob.decode("ascii") if isinstance(blob, bytes) else blob
            self._second = new_histogram()
        self._sec_requests = self._sec_errors = 0
        self.timeseries.append(row)
        return row

    def delta(self, row: dict[str, Any], cpu: float | None = None) -> dict[str, Any]:
        """``row`` (just returned by :meth:`tick`) plus that second's requests and errors per
        action: ``{**row, "actions": {name: {"count": n, "errors": e}}}``, for streaming, and
        ``"live"``: that second's ``dropped`` arrivals and the generator's ``cpu`` (a fraction
        of one core, when measured), for the live view.

        Per-action counts are the differences of the cumulative counters since the last call,
        so nothing is added to the per-request path.
        """
        actions: dict[str, dict[str, Any]] = {}
        base = self._delta_base
        for name, stats in self.actions.items():
            count, errors = base.get(name, (0, 0))
            if stats.count != count or stats.errors != errors:
                actions[name] = {"count": stats.count - count, "errors": stats.errors - errors}
                base[name] = (stats.count, stats.errors)
                if self.latency_bounds is not None:
                    actions[name].update(self._latency_delta(name, stats.histogram))
        dropped = self.dropped_iterations - self._dropped_base
        self._dropped_base = self.dropped_iterations
        return {**row, "actions": actions, "live": {"dropped": dropped, "cpu": cpu}}

    def _latency_delta(self, name: str, hist: HdrHistogram) -> dict[str, Any]:
        """That second's requests of one action at or below each of ``latency_bounds``
        (``le``) and their latency sum (seconds): differences of cumulative counts, so
        they add up over seconds and workers, like a Prometheus histogram's."""
        assert self.latency_bounds is not None
        le, total = cumulative_counts(hist, self.latency_bounds)
        old_le, old_total = self._latency_base.get(name, ([0] * len(le), 0.0))
        self._latency_base[name] = (le, total)
        return {"le": [a - b for a, b in zip(le, old_le, strict=True)],
                "sum": total - old_total}

    def result(self, *, duration: float, workload: dict[str, Any], labels: dict[str, str],
               generator: dict[str, Any], interrupted: bool) -> Result:
        res = Result(
            workload=workload,
            labels=labels,
            started_at=self.started,
            duration=duration,
            apdex_t=self.apdex_t,
            iterations=self.iterations,
            dropped_iterations=self.dropped_iterations,
            total=self.total,
            actions=dict(self.actions),
            errors=self.errors,
            timeseries=self.timeseries,
            server_timing=self.server_timing,
            generator=generator,
            interrupted=interrupted,
        )
        for stats in (self.total, *self.actions.values()):
            stats.invalidate()
        res._set_durations()
        return res
