"""The live view of the loads: per-second rows folded as they come, and the terminal line.

No pytest here. Rows come either from the engine's own ``on_second`` deltas (one process) or
from the coordinator's merged seconds (xdist: `SeriesAggregate.take_new`, every worker's
share already folded). `LiveState` keeps, per load call, the seconds seen so far, running
totals, per-action counters and a cumulative HdrHistogram (for Prometheus); it is read by
the terminal line, the live page and the Prometheus collector, each from its own thread,
under one lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from pytest_minigram.load.monitor import SATURATION_CPU
from pytest_minigram.load.result import new_histogram
from pytest_minigram.metrics import ms_number

__all__ = ["PROMETHEUS_BOUNDS", "RECENT", "LiveLoad", "LiveState", "LoadView", "format_line"]

RECENT = 5  # seconds: the p95 "of the last few seconds"
# seconds: the Prometheus histograms' buckets; each action's are counted by the engine, and
# only when the controller serves Prometheus metrics (`Recorder` ``latency_bounds``)
PROMETHEUS_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0)
RATE_SECONDS = 3  # seconds averaged for the req/s figure
MAX_FINISHED = 200  # finished loads the page lists

LoadId = tuple[str, int]


def _add_blob(into: HdrHistogram, blob: str | None) -> None:
    if blob:
        other = HdrHistogram.decode(blob)
        if other.get_total_count():
            into.add(other)


@dataclass
class LiveLoad:
    """One load call as seen so far."""

    test: str
    call: int
    stage: str
    workload: dict[str, Any]
    planned: float | None
    started: float  # wall clock (time.time) of the start
    workers: int = 1
    seconds: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    dropped: int = 0
    actions: dict[str, list[int]] = field(default_factory=dict)  # name -> [count, errors]
    # name -> its requests at or below each of PROMETHEUS_BOUNDS, then its latency sum (s)
    latency: dict[str, list[float]] = field(default_factory=dict)
    histogram: HdrHistogram = field(default_factory=new_histogram)
    recent: deque[str | None] = field(default_factory=lambda: deque(maxlen=RECENT))
    ended: float | None = None
    outcome: str = "running"  # running, passed, failed, stopped
    reason: str = ""

    @property
    def id(self) -> LoadId:
        return (self.test, self.call)

    @property
    def running(self) -> bool:
        return self.ended is None

    def elapsed(self, now: float | None = None) -> float:
        end = self.ended if self.ended is not None else (now or time.time())
        return max(0.0, end - self.started)

    def view(self, now: float | None = None) -> LoadView:
        last = self.seconds[-RATE_SECONDS:]
        rps = sum(s["requests"] for s in last) / len(last) if last else 0.0
        hist = new_histogram()
        for blob in self.recent:
            _add_blob(hist, blob)
        p95 = hist.get_value_at_percentile(95.0) / 1e6 if hist.get_total_count() else None
        recent_cpu = [s["cpu"] for s in last if s.get("cpu") is not None]
        cpu = max(recent_cpu) if recent_cpu else None
        return LoadView(
            test=self.test, call=self.call, stage=self.stage,
            elapsed=self.elapsed(now), planned=self.planned,
            users=self.seconds[-1]["users"] if self.seconds else 0,
            rate=self.workload.get("rate") if self.workload.get("model") != "closed" else None,
            rps=rps, requests=self.requests,
            error_rate=self.errors / self.requests if self.requests else 0.0,
            p95=p95, cpu=cpu, saturated=cpu is not None and cpu >= SATURATION_CPU,
            dropped=self.dropped, workers=self.workers, outcome=self.outcome)

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """What the live page draws: the series so far (no histograms) and the figures."""
        view = self.view(now)
        return {
            "test": self.test, "call": self.call, "stage": self.stage,
            "workload": self.workload, "planned": self.planned, "workers": self.workers,
            "elapsed": round(view.elapsed, 2), "outcome": self.outcome, "reason": self.reason,
            "requests": self.requests, "errors": self.errors, "dropped": self.dropped,
            "rps": round(view.rps, 2), "error_rate": view.error_rate, "p95": view.p95,
            "cpu": view.cpu, "saturated": view.saturated, "line": format_line(view),
            "series": {key: [s.get(key) for s in self.seconds]
                       for key in ("t", "requests", "errors", "users", "p50", "p95", "cpu")},
        }


@dataclass(frozen=True)
class LoadView:
    """The figures of the terminal line, for one load at one instant."""

    test: str
    call: int
    stage: str
    elapsed: float
    planned: float | None
    users: int
    rate: float | None  # the declared arrival rate (open workloads)
    rps: float
    requests: int
    error_rate: float
    p95: float | None  # of the last RECENT seconds
    cpu: float | None  # the busiest generator's CPU of the last seconds, of one core
    saturated: bool
    dropped: int = 0
    workers: int = 1
    outcome: str = "running"


def format_line(v: LoadView) -> str:
    """``minigram live: test_x.py::test_a [stage1] 12s/20s users 50 | 312.0 req/s ...``"""
    name = v.test + (f" #{v.call + 1}" if v.call else "") + (f" [{v.stage}]" if v.stage else "")
    planned = f"/{v.planned:g}s" if v.planned else ""
    load = f"users {v.users}" if v.rate is None else f"rate {v.rate:g}/s users {v.users}"
    p95 = "-" if v.p95 is None else f"{ms_number(v.p95)} ms"
    parts = [f"minigram live: {name} {v.elapsed:.0f}s{planned}", load,
             f"{v.rps:.1f} req/s", f"requests {v.requests}",
             f"errors {v.error_rate:.2%}", f"p95({RECENT}s) {p95}"]
    if v.workers > 1:
        parts.append(f"{v.workers} workers")
    if v.dropped:
        parts.append(f"dropped {v.dropped}")
    if v.saturated:
        parts.append(f"WARNING generator saturated (CPU {v.cpu:.0%})")
    if v.outcome != "running":
        parts.append(v.outcome)
    return " | ".join(parts)


class LiveState:
    """Every load of the session, running or finished; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loads: dict[LoadId, LiveLoad] = {}
        self._order: list[LoadId] = []
        self.version = 0  # bumped on every change (the page's SSE sends on a change)

    def begin(self, test: str, call: int = 0, *, stage: str = "",
              workload: Mapping[str, Any] | None = None, planned: float | None = None,
              workers: int = 1, started: float | None = None) -> LiveLoad:
        load = LiveLoad(test, call, stage or "", dict(workload or {}), planned,
                        started if started is not None else time.time(), workers)
        with self._lock:
            self._loads[load.id] = load
            self._order.append(load.id)
            self._trim()
            self.version += 1
        return load

    def second(self, load_id: LoadId, row: Mapping[str, Any],
               extra: Mapping[str, Any] | None = None) -> None:
        """One (merged) second: a ``Result.timeseries`` row; ``extra`` has ``actions``,
        ``dropped`` and ``cpu`` (the engine's delta carries them as ``actions``/``live``)."""
        if extra is None:
            extra = {**(row.get("live") or {}), "actions": row.get("actions") or {}}
        with self._lock:
            load = self._loads.get(load_id)
            if load is None:
                return
            cpu = extra.get("cpu")
            load.seconds.append({
                "t": int(row["t"]), "requests": int(row["requests"]),
                "errors": int(row["errors"]), "users": int(row["users"]),
                "p50": row.get("p50"), "p95": row.get("p95"),
                "cpu": float(cpu) if isinstance(cpu, int | float) else None})
            load.requests += int(row["requests"])
            load.errors += int(row["errors"])
            load.dropped += int(extra.get("dropped") or 0)
            blob = row.get("histogram")
            load.recent.append(blob)
            _add_blob(load.histogram, blob)
            for name, counts in (extra.get("actions") or {}).items():
                slot = load.actions.setdefault(str(name), [0, 0])
                slot[0] += int(counts.get("count", 0))
                slot[1] += int(counts.get("errors", 0))
                le = counts.get("le")
                if isinstance(le, list) and len(le) == len(PROMETHEUS_BOUNDS):
                    add = [*le, float(counts.get("sum") or 0.0)]
                    into = load.latency.get(str(name))
                    load.latency[str(name)] = add if into is None else [
                        a + b for a, b in zip(into, add, strict=True)]
            self.version += 1

    def finish(self, load_id: LoadId, outcome: str, reason: str = "",
               ended: float | None = None) -> None:
        with self._lock:
            load = self._loads.get(load_id)
            if load is None or load.ended is not None:
                return
            load.ended = ended if ended is not None else time.time()
            load.outcome, load.reason = outcome, reason
            self.version += 1

    def get(self, load_id: LoadId) -> LiveLoad | None:
        with self._lock:
            return self._loads.get(load_id)

    def running(self) -> list[LiveLoad]:
        with self._lock:
            return [self._loads[i] for i in self._order if self._loads[i].running]

    def loads(self) -> list[LiveLoad]:
        """Every load of the session, the trimmed ones too (for counters that only grow)."""
        with self._lock:
            return list(self._loads.values())

    def line(self, load_id: LoadId, now: float | None = None) -> str:
        with self._lock:
            load = self._loads[load_id]
            return format_line(load.view(now))

    def export(self, bounds: tuple[float, ...]) -> list[dict[str, Any]]:
        """Per load, plain figures for a metrics endpoint: counters per action, the latency
        histogram as cumulative counts at each bound (seconds), users, CPU."""
        out = []
        with self._lock:
            for load in self._loads.values():
                buckets = [0] * len(bounds)
                total_us = 0.0
                for item in load.histogram.get_recorded_iterator():
                    value, n = item.value_iterated_to / 1e6, item.count_at_value_iterated_to
                    total_us += item.value_iterated_to * n
                    for i, bound in enumerate(bounds):
                        if value <= bound:
                            buckets[i] += n
                last = load.seconds[-1] if load.seconds else {}
                out.append({
                    "test": load.test, "stage": load.stage, "running": load.running,
                    "actions": {name: tuple(c) for name, c in load.actions.items()},
                    "action_latency": {name: list(v) for name, v in load.latency.items()},
                    "requests": load.requests, "errors": load.errors, "dropped": load.dropped,
                    "buckets": buckets, "count": load.histogram.get_total_count(),
                    "sum": total_us / 1e6,
                    "users": last.get("users", 0) if load.running else 0,
                    "cpu": last.get("cpu")})
        return out

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The page's data: the running loads in full, the finished ones too (newest last)."""
        with self._lock:
            loads = [self._loads[i] for i in self._order]
            return {"version": self.version,
                    "running": [ld.to_dict(now) for ld in loads if ld.running],
                    "finished": [ld.to_dict(now) for ld in loads if not ld.running]}

    def _trim(self) -> None:
        finished = [i for i in self._order if not self._loads[i].running]
        for load_id in finished[: max(0, len(finished) - MAX_FINISHED)]:
            self._order.remove(load_id)
            # kept in _loads: Prometheus counters must not go down
