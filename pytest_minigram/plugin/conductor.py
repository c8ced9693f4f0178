"""The conductor: turns a test's load request into runs of the engine, and one record.

It scales the declared workload (``--minigram-users``, ``--minigram-duration``...), runs the
rounds (round r against the target's r-th process), alternates head and side-by-side
baseline (ABBA), meets the other xdist workers for each run, watches the target while the
load runs, and keeps the test's `PerfRecord`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_minigram.coordination import CoordinationError
from pytest_minigram.live.state import PROMETHEUS_BOUNDS
from pytest_minigram.load import Closed, Journey, Open, RampingRate, Result, concat, run
from pytest_minigram.load import parse_duration as _parse_duration
from pytest_minigram.load.registry import resolve_journey
from pytest_minigram.load.workloads import Workload
from pytest_minigram.plugin import xdist
from pytest_minigram.plugin.live import LIVE, stopped_message
from pytest_minigram.plugin.options import MAX_ROUNDS, Settings
from pytest_minigram.plugin.signals import LoadWatch
from pytest_minigram.plugin.targets import TargetInfo
from pytest_minigram.record import KINDS, PerfRecord
from pytest_minigram.redact import redact_url
from pytest_minigram.server import process_tree_cpu

RECORDS = pytest.StashKey[list[PerfRecord]]()
ROLE = pytest.StashKey[str]()
BARRIER_TIMEOUT = 120.0
HEAD, BASELINE = "head", "baseline"


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return _parse_duration(str(value))
    except ValueError:
        raise pytest.UsageError(f"minigram_load: bad {what} {value!r}; expected seconds or a "
                                "time such as 20s, 500ms or 2m") from None


@dataclass(frozen=True)
class LoadSpec:
    """A load as a test declares it, before the session's scaling."""

    users: float | None = None
    rate: float | None = None
    duration: float | str | None = None
    stages: Sequence[tuple[float, float | str]] | None = None
    ramp_up: float | str | None = None
    think_time: float | tuple[float, float] | None = None
    iterations: int | None = None
    max_users: int | None = None
    params: dict[str, Any] | None = None
    apdex_t: float = 0.5
    timeout: float = 10.0
    rounds: int | None = None
    kind: str | None = None
    verify: bool = True  # https:// targets: verify the certificate
    ca_bundle: str | None = None  # ... against this CA bundle instead of the system's


def test_kind(item: pytest.Item) -> str:
    for name in ("stress", "breaking", "diagnostic"):
        if item.get_closest_marker(name) is not None:
            return name
    return "load"


class Conductor:
    def __init__(self, config: pytest.Config, settings: Settings,
                 worker: xdist.XdistWorker | None) -> None:
        self.config = config
        self.settings = settings
        self.worker = worker

    def journey(self, journey: Any) -> Journey:
        try:
            return resolve_journey(journey)
        except (KeyError, ValueError, TypeError) as exc:
            raise pytest.UsageError(f"minigram_load: {exc.args[0]}") from None

    def workload(self, spec: LoadSpec) -> Closed | Open | RampingRate:
        s = self.settings
        dur = _seconds(spec.duration, "duration") if spec.duration is not None else None
        if dur is not None:
            dur = s.fixed_duration if s.fixed_duration else dur * s.duration_factor
        ramp = _seconds(spec.ramp_up, "ramp_up") if spec.ramp_up else 0.0
        max_users = spec.max_users or 1000
        if spec.stages:
            scaled = [(float(r) * s.rate_factor,
                       s.duration_factor * _seconds(d, "stage duration"))
                      for r, d in spec.stages]
            return RampingRate(stages=scaled, max_users=max_users)
        if spec.rate is not None:
            return Open(rate=float(spec.rate) * s.rate_factor, duration=dur or 10.0,
                        max_users=max_users)
        n = max(1, round((spec.users or 10) * s.users_factor))
        if dur is None and spec.iterations is None:
            dur = 10.0 * s.duration_factor if not s.fixed_duration else s.fixed_duration
        return Closed(users=n, duration=dur, ramp_up=ramp, iterations=spec.iterations,
                      think_time=spec.think_time)

    def run_load(self, item: pytest.Item, journey: Any, target: TargetInfo,
                 baseline: Sequence[TargetInfo], spec: LoadSpec) -> tuple[PerfRecord, Result]:
        j = self.journey(journey)
        wl = self.workload(spec)
        n_rounds = self.settings.rounds if spec.rounds is None else spec.rounds
        if (not isinstance(n_rounds, int) or isinstance(n_rounds, bool)
                or not 1 <= n_rounds <= MAX_ROUNDS):
            raise pytest.UsageError(f"minigram_load: bad rounds {spec.rounds!r}; expected a "
                                    f"whole number from 1 to {MAX_ROUNDS}")
        kind = spec.kind or test_kind(item)
        if kind not in KINDS:
            raise pytest.UsageError(f"minigram_load: bad kind {kind!r}; one of {KINDS}")
        labels = {"test": item.nodeid, "stage": target.variant or "", "journey": j.name,
                  "target": redact_url(target.url)}
        options = {"timeout": spec.timeout, "apdex_t": spec.apdex_t, "labels": labels,
                   "params": {**target.params, **(spec.params or {})},
                   "verify": spec.verify, "ca_bundle": spec.ca_bundle,
                   # per-action latency buckets cost the engine a scan a second: only when
                   # the controller serves them
                   "latency_bounds": PROMETHEUS_BOUNDS if self.settings.prometheus else None}
        cpu_before = [process_tree_cpu(pid) for pid in target.pids]
        base_urls = [url for info in baseline for url in info.urls]
        parts: dict[str, list[Result]] = {HEAD: [], BASELINE: []}
        used: dict[str, list[str]] = {HEAD: [], BASELINE: []}
        stopped = False
        for index in range(n_rounds):
            if stopped:
                break
            # duet: baseline and head take turns, in the order ABBA ABBA..., so that a
            # machine that drifts faster or slower over the test treats both alike
            sides = [HEAD] if not base_urls else (
                [BASELINE, HEAD] if index % 2 == 0 else [HEAD, BASELINE])
            for side in sides:
                pool = target.urls if side == HEAD else base_urls
                url = pool[index % len(pool)]
                key = item.nodeid + ("" if side == HEAD else "#baseline") + (
                    f"#round{index}" if index else "")
                watched = [target] if side == HEAD else list(baseline)
                part, stopped = self._run_round(item, wl, j, url, watched, options, key)
                parts[side].append(part)
                used[side].append(redact_url(url))
                if stopped:
                    break
        if not parts[HEAD]:  # stopped during the first baseline round: that is what there is
            parts[HEAD], used[HEAD] = parts[BASELINE], used[BASELINE]
            parts[BASELINE], used[BASELINE], base_urls = [], [], []
        result = _join(parts[HEAD], used[HEAD])
        result.labels.update(labels)
        result.workload = wl.to_dict()  # the whole load, not one worker's share
        for info in (target, *baseline):
            info.check()
        cpu_after = [process_tree_cpu(pid) for pid in target.pids]
        server = None
        if target.pids and None not in cpu_before and None not in cpu_after:
            server = {"cpu_seconds": round(sum(cpu_after) - sum(cpu_before),  # type: ignore[arg-type]
                                           4), "pid": target.pids[0]}
        record = PerfRecord(test=item.nodeid, stage=target.variant, kind=kind, result=result,
                            server=server, stopped=stopped)
        if base_urls:
            base = _join(parts[BASELINE], used[BASELINE])
            base.labels.update(labels, target=redact_url(base_urls[0]))
            base.workload = wl.to_dict()
            record.duet_baseline = base
        item.stash.setdefault(RECORDS, []).append(record)
        if item.stash.get(ROLE, "single") != "follower":
            self.config.hook.pytest_minigram_result(config=self.config, nodeid=item.nodeid,
                                                    stage=target.variant, result=result)
        if stopped:  # recorded as it is, never a pass
            raise pytest.fail.Exception(stopped_message(result, wl.planned_duration()),
                                        pytrace=False)
        return record, result

    def _run_round(self, item: pytest.Item, wl: Workload, j: Journey, url: str,
                   watched: Sequence[TargetInfo], options: dict[str, Any],
                   key: str) -> tuple[Result, bool]:
        """One run of the workload; under xdist, every worker's share, merged once by the
        controller's coordinator. True with it when it was stopped from the live page."""
        still_ok: list[Callable[[], bool]] = [info.alive for info in watched]
        stage = str(options["labels"].get("stage") or "")
        if self.worker is None or item.get_closest_marker("perf") is None:
            live = self.config.stash.get(LIVE, None)
            local = (live.local(item.nodeid, stage, wl.to_dict(), wl.planned_duration())
                     if live is not None else None)
            extra = {} if local is None else {"on_start": local.on_start,
                                              "on_second": local.on_second}
            result: Result | None = None
            try:
                with LoadWatch(still_ok + ([local.still_running] if local else [])) as watch:
                    result = run(wl, j, url, stop_event=watch.stop, **extra, **options)
            finally:
                if local is not None:
                    local.finish(result)
            if local is not None and local.stopped:
                return result, True
            watch.raise_if_interrupted(result)
            return result, False
        health = [info.health_url for info in watched if info.health_url]
        info = {"stage": stage, "workload": wl.to_dict()}
        try:
            with self.worker.client.arrive(self.worker.next_key(item.nodeid),
                                           expected_duration=wl.planned_duration(),
                                           health_urls=health, info=info) as load:
                item.stash[ROLE] = "leader" if load.index == 0 else "follower"
                with LoadWatch([*still_ok, lambda: not load.stop.is_set()]) as watch:
                    partial = run(wl.split(load.count)[load.index], j, url,
                                  start_at=load.start_at, seed=load.index,
                                  stop_event=watch.stop, on_start=load.on_start,
                                  on_second=load.on_second, **options)
                if not load.stop.is_set():
                    watch.raise_if_interrupted(partial)
                merged = load.finish(partial)
                return merged, bool(load.stopped)
        except CoordinationError as exc:
            raise pytest.fail.Exception(f"{key}: {exc}", pytrace=False) from None


def _join(rounds: list[Result], targets: list[str]) -> Result:
    return rounds[0] if len(rounds) == 1 else concat(rounds, targets)
