"""``run()``: play a workload of a journey against one target and return a :class:`Result`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any

from pytest_minigram.load.client import ConnectionTimes, Target
from pytest_minigram.load.journey import (
    Journey,
    JourneyLike,
    RequestFailed,
    Step,
    VirtualUser,
    as_journey,
)
from pytest_minigram.load.monitor import PROBE_INTERVAL, CpuMonitor
from pytest_minigram.load.recorder import Progress, Recorder
from pytest_minigram.load.result import Result
from pytest_minigram.load.workloads import Workload
from pytest_minigram.redact import redact_url

__all__ = ["run", "run_async"]

ProgressCallback = Callable[[Progress], None]
StartCallback = Callable[[float], None]
SecondCallback = Callable[[dict[str, Any]], None]


class _Engine:
    """The runner side of ``workloads.Engine``: users, iterations, counters, on_stop."""

    def __init__(self, journey: Journey, target: Target, recorder: Recorder,
                 params: Mapping[str, Any], timeout: float, seed: int) -> None:
        self.journey = journey
        self.target = target
        self.recorder = recorder
        self.params = params
        self.timeout = timeout
        self.seed = seed
        self.t0 = perf_counter()
        self.active_users = 0
        self.times = ConnectionTimes()
        self._next_id = 0
        self._users: set[VirtualUser] = set()
        self._stopping: set[asyncio.Task[None]] = set()

    def new_user(self) -> VirtualUser:
        user_id = self._next_id
        self._next_id += 1
        user = VirtualUser(user_id, self.target, self.recorder, params=self.params,
                           timeout=self.timeout, seed=hash((self.seed, user_id)),
                           times=self.times)
        self.active_users += 1
        self._users.add(user)
        return user

    def release(self, user: VirtualUser) -> None:
        """The workload is done with ``user``: its on_stop runs in a task of its own."""
        if user not in self._users:
            return
        self._users.discard(user)
        self.active_users -= 1
        on_stop = self.journey.on_stop
        if on_stop is None or not user.started:
            user.close()
            return
        task = asyncio.get_running_loop().create_task(self._stop(user, on_stop))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop(self, user: VirtualUser, on_stop: Step) -> None:
        try:
            await self._play(user, on_stop, "on_stop")
        finally:
            user.close()

    async def shutdown(self) -> None:
        """End of the run: release the users still there; their on_stop (and that of users
        released just before) get ``timeout`` seconds in all, then are cancelled."""
        for user in list(self._users):
            self.release(user)
        if self._stopping:
            _, pending = await asyncio.wait(set(self._stopping), timeout=self.timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def dropped(self, n: int = 1) -> None:
        self.recorder.dropped_iterations += n

    async def _play(self, user: VirtualUser, step: Step, what: str = "") -> bool:
        try:
            await step(user)
        except RequestFailed:
            return False  # already counted as a request error
        except Exception as exc:  # noqa: BLE001 - a journey bug must not stop the run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            text = (f"journey {self.journey.name!r}{' ' + what if what else ''}: "
                    f"{type(exc).__name__}: {exc} ({where.filename}:{where.lineno})")
            self.recorder.error("exception", text)
            return False
        return True

    async def iteration(self, user: VirtualUser, lag: float = 0.0) -> None:
        user._lag = lag
        journey = self.journey
        try:
            if not user.started:
                if journey.on_start is not None and not await self._play(
                        user, journey.on_start, "on_start"):
                    return
                user.started = True
            if await self._play(user, journey.iteration):
                self.recorder.iterations += 1
        finally:
            user._lag = 0.0


def run(workload: Workload, journey: JourneyLike, target: str, *, timeout: float = 10.0,
        apdex_t: float = 0.5, labels: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None, on_progress: ProgressCallback | None = None,
        start_at: float | None = None, stop_event: threading.Event | None = None,
        max_time: float | None = None, seed: int = 0,
        verify: bool = True, ca_bundle: str | os.PathLike[str] | None = None,
        on_start: StartCallback | None = None,
        on_second: SecondCallback | None = None,
        latency_bounds: tuple[float, ...] | None = None) -> Result:
    """Run synchronously in a fresh event loop (uvloop when installed).

    Ctrl-C (or ``stop_event.set()``) ends the run early and returns the partial result with
    ``interrupted=True``. ``journey`` is anything :func:`as_journey` accepts. An ``https://``
    target is verified against the system's CAs, or ``ca_bundle``'s; ``verify=False`` skips
    that (and warns).

    Streaming (for a coordinator): ``on_start(t)`` is called once with the instant the run
    really started (``time.time()``, the result's ``started_at``); ``on_second(delta)`` after
    every second of the time series, the last partial one included, with that second's
    ``Result.timeseries`` row plus ``"actions"``, its requests and errors per action (and,
    with ``latency_bounds`` in seconds, each action's ``le`` counts at those bounds and its
    latency ``sum``, for a Prometheus histogram). Both run in the event loop: they must be
    quick and must not raise.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_async(
            workload, journey, target, timeout=timeout, apdex_t=apdex_t, labels=labels,
            params=params, on_progress=on_progress, start_at=start_at, stop_event=stop_event,
            max_time=max_time, seed=seed,
            verify=verify, ca_bundle=ca_bundle, on_start=on_start, on_second=on_second,
            latency_bounds=latency_bounds,
        ))


async def run_async(workload: Workload, journey: JourneyLike, target: str, *,
                    timeout: float = 10.0, apdex_t: float = 0.5,
                    labels: Mapping[str, str] | None = None,
                    params: Mapping[str, Any] | None = None,
                    on_progress: ProgressCallback | None = None,
                    start_at: float | None = None,
                    stop_event: threading.Event | None = None,
                    max_time: float | None = None, seed: int = 0,
                    verify: bool = True,
                    ca_bundle: str | os.PathLike[str] | None = None,
                    on_start: StartCallback | None = None,
                    on_second: SecondCallback | None = None,
                    latency_bounds: tuple[float, ...] | None = None) -> Result:
    """The coroutine behind :func:`run`; cancelling it returns the partial result."""
    journey = as_journey(journey)
    if not isinstance(workload, Workload):
        raise TypeError(f"not a workload: {workload!r}")
    if timeout <= 0 or apdex_t <= 0:
        raise ValueError("timeout and apdex_t must be > 0")
    tgt = Target(target, verify=verify, ca_bundle=ca_bundle)
    all_labels = {"journey": journey.name, "target": redact_url(tgt.url), **(labels or {})}
    interrupted = False
    if start_at is not None:
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        except asyncio.CancelledError:
            interrupted = True
    recorder = Recorder(apdex_t, open_model=workload.model != "closed",
                        latency_bounds=latency_bounds)
    engine = _Engine(journey, tgt, recorder, dict(params or {}), timeout, seed)
    monitor = CpuMonitor()
    recorder.started = time.time()
    engine.t0 = perf_counter()
    if on_start is not None:
        on_start(recorder.started)
    limit = workload.planned_duration()
    if max_time is not None:
        limit = max_time if limit is None else min(limit, max_time)
    driver = asyncio.create_task(workload.drive(engine)) if not interrupted else None
    ticker = asyncio.create_task(_tick(engine, recorder, monitor, on_progress, on_second))
    probe = asyncio.create_task(_probe(monitor))
    try:
        while driver is not None and not driver.done():
            if stop_event is not None and stop_event.is_set():
                interrupted = True
                break
            step = 0.1 if stop_event is not None else 3600.0
            if limit is not None:
                remaining = engine.t0 + limit - perf_counter()
                if remaining <= 0:
                    break
                step = min(step, remaining)
            await asyncio.wait({driver}, timeout=step)
    except asyncio.CancelledError:
        interrupted = True
    finally:
        end = perf_counter()
        ticker.cancel()
        probe.cancel()
        if driver is not None:
            driver.cancel()
            await asyncio.gather(driver, ticker, probe, return_exceptions=True)
            if not driver.cancelled() and driver.exception() is not None:
                raise driver.exception()  # type: ignore[misc]
        else:
            await asyncio.gather(ticker, probe, return_exceptions=True)
        await engine.shutdown()
    duration = end - engine.t0
    last = recorder.timeseries
    if not last or duration - len(last) > 0.05 or recorder._sec_requests:
        row = recorder.tick(engine.active_users)
        cpu = monitor.sample()
        if on_second is not None:
            on_second(recorder.delta(row, cpu or None))
    else:
        monitor.sample()
    result = recorder.result(duration=duration, workload=workload.to_dict(), labels=all_labels,
                             generator=monitor.summary(), interrupted=interrupted)
    result.connect, result.tls = engine.times.connect, engine.times.tls
    return result


async def _tick(engine: _Engine, recorder: Recorder, monitor: CpuMonitor,
                on_progress: ProgressCallback | None,
                on_second: SecondCallback | None = None) -> None:
    second = 1
    while True:
        await asyncio.sleep(max(0.0, engine.t0 + second - perf_counter()))
        second += 1
        row = recorder.tick(engine.active_users)
        cpu = monitor.sample()
        if on_second is not None:
            on_second(recorder.delta(row, cpu))
        if on_progress is not None:
            on_progress(Progress(
                elapsed=perf_counter() - engine.t0, users=engine.active_users,
                rps=float(row["requests"]), errors=recorder.total.errors, p95=row["p95"],
                requests=recorder.total.count,
            ))


async def _probe(monitor: CpuMonitor) -> None:
    while True:
        expected = perf_counter() + PROBE_INTERVAL
        await asyncio.sleep(PROBE_INTERVAL)
        monitor.lag(max(0.0, perf_counter() - expected))
