"""Workload models: closed (N users), open (constant arrival rate), ramping arrival rate.

Each model is a small frozen dataclass behind the :class:`Workload` protocol. ``drive`` plays
the model against an :class:`Engine` (the runner), which owns users, recording and stopping.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import Any, Protocol, runtime_checkable

from pytest_minigram.load.journey import Journey, ThinkTime, VirtualUser, think_seconds

__all__ = [
    "Closed",
    "Engine",
    "Open",
    "RampingRate",
    "Workload",
    "parse_duration",
    "workload_from_dict",
]


class Engine(Protocol):
    """What a workload needs from the runner."""

    journey: Journey
    timeout: float
    t0: float  # perf_counter() at the start of the run
    active_users: int

    def new_user(self) -> VirtualUser: ...

    async def iteration(self, user: VirtualUser, lag: float = 0.0) -> None: ...

    def dropped(self, n: int = 1) -> None: ...

    def release(self, user: VirtualUser) -> None: ...


@runtime_checkable
class Workload(Protocol):
    @property
    def model(self) -> str: ...

    def split(self, n: int) -> list[Any]: ...

    def scaled(self, *, users: float = 1.0, duration: float = 1.0, rate: float = 1.0) -> Any: ...

    def planned_duration(self) -> float | None: ...

    def to_dict(self) -> dict[str, Any]: ...

    async def drive(self, engine: Engine) -> None: ...


def _split_int(total: int, n: int) -> list[int]:
    base, rest = divmod(total, n)
    return [base + (1 if i < rest else 0) for i in range(n)]


def _split_float(total: float, n: int) -> list[float]:
    parts = [total / n] * (n - 1)
    return [*parts, total - sum(parts)]


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"split() needs n >= 1, got {n}")


def _think_json(think: ThinkTime) -> Any:
    return list(think) if isinstance(think, tuple) else think


@dataclass(frozen=True)
class Closed:
    """``users`` concurrent users, started evenly over ``ramp_up`` seconds.

    The run ends after ``duration`` seconds (ramp-up included) or when every user has done
    ``iterations`` iterations (per user), whichever comes first.
    """

    users: int
    duration: float | None = None
    ramp_up: float = 0.0
    iterations: int | None = None
    think_time: ThinkTime = None
    model: str = field(default="closed", init=False)

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError("users must be >= 0")
        if self.duration is None and self.iterations is None:
            raise ValueError("Closed needs a duration or an iteration count")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be > 0")
        if self.ramp_up < 0:
            raise ValueError("ramp_up must be >= 0")

    def split(self, n: int) -> list[Closed]:
        _check_n(n)
        return [replace(self, users=u) for u in _split_int(self.users, n)]

    def scaled(self, *, users: float = 1.0, duration: float = 1.0, rate: float = 1.0) -> Closed:
        return replace(
            self,
            users=max(1, round(self.users * users)) if self.users else 0,
            duration=None if self.duration is None else self.duration * duration,
            ramp_up=self.ramp_up * duration,
        )

    def planned_duration(self) -> float | None:
        return self.duration

    def to_dict(self) -> dict[str, Any]:
        return {"model": "closed", "users": self.users, "ramp_up": self.ramp_up,
                "duration": self.duration, "iterations": self.iterations,
                "think_time": _think_json(self.think_time), "rate": None, "stages": None}

    async def drive(self, engine: Engine) -> None:
        think = self.think_time if self.think_time is not None else engine.journey.think_time
        step = self.ramp_up / self.users if self.users else 0.0
        async with asyncio.TaskGroup() as group:
            for i in range(self.users):
                group.create_task(self._user(engine, i * step, think))

    async def _user(self, engine: Engine, delay: float, think: ThinkTime) -> None:
        if delay:
            await asyncio.sleep(delay)
        user = engine.new_user()
        try:
            done = 0
            while self.iterations is None or done < self.iterations:
                await engine.iteration(user)
                done += 1
                pause = think_seconds(think, user.rng)
                if pause:
                    await asyncio.sleep(pause)
        finally:
            engine.release(user)


class _Arrivals:
    """Shared open-model driver: start one iteration per arrival on an idle user.

    Coordinated omission: when no user is free the arrival waits in a queue with its
    *intended* start time, and the first request of the iteration is charged the wait
    (``lag``). Arrivals that wait longer than ``max_wait`` (default: the request timeout),
    or are still waiting when the run ends, are counted as dropped iterations.
    """

    max_users: int
    max_wait: float | None

    def arrival_offsets(self) -> Iterator[float]:
        raise NotImplementedError

    async def drive(self, engine: Engine) -> None:
        idle: list[VirtualUser] = []
        queue: deque[float] = deque()
        max_wait = self.max_wait if self.max_wait is not None else engine.timeout
        created = 0

        async def play(user: VirtualUser, intended: float) -> None:
            while True:
                await engine.iteration(user, max(0.0, perf_counter() - intended))
                while queue and perf_counter() - queue[0] > max_wait:
                    queue.popleft()
                    engine.dropped()
                if not queue:
                    idle.append(user)
                    return
                intended = queue.popleft()

        try:
            async with asyncio.TaskGroup() as group:
                for offset in self.arrival_offsets():
                    intended = engine.t0 + offset
                    delay = intended - perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if idle:
                        group.create_task(play(idle.pop(), intended))
                    elif created < self.max_users:
                        created += 1
                        group.create_task(play(engine.new_user(), intended))
                    else:
                        queue.append(intended)
                        now = perf_counter()
                        while queue and now - queue[0] > max_wait:
                            queue.popleft()
                            engine.dropped()
        finally:
            if queue:
                engine.dropped(len(queue))
                queue.clear()
            for user in idle:
                engine.release(user)


@dataclass(frozen=True)
class Open(_Arrivals):
    """``rate`` iterations started per second for ``duration`` seconds, on at most
    ``max_users`` concurrent users."""

    rate: float
    duration: float
    max_users: int = 1000
    max_wait: float | None = None
    phase: float = 0.0  # fraction of one inter-arrival gap; set by split() to interleave parts
    model: str = field(default="open", init=False)

    def __post_init__(self) -> None:
        if self.rate < 0 or self.duration <= 0 or self.max_users < 0:
            raise ValueError("Open needs rate >= 0, duration > 0, max_users >= 0")

    def split(self, n: int) -> list[Open]:
        _check_n(n)
        return [replace(self, rate=r, max_users=u, phase=(self.phase + i) / n)
                for i, (r, u) in enumerate(zip(_split_float(self.rate, n),
                                               _split_int(self.max_users, n), strict=True))]

    def scaled(self, *, users: float = 1.0, duration: float = 1.0, rate: float = 1.0) -> Open:
        return replace(self, rate=self.rate * rate, duration=self.duration * duration,
                       max_users=max(1, round(self.max_users * users)))

    def planned_duration(self) -> float | None:
        return self.duration

    def arrival_offsets(self) -> Iterator[float]:
        if self.rate <= 0:
            return
        k = 0
        while True:
            t = (k + self.phase) / self.rate
            if t >= self.duration:
                return
            yield t
            k += 1

    def to_dict(self) -> dict[str, Any]:
        return {"model": "open", "users": None, "max_users": self.max_users, "ramp_up": None,
                "duration": self.duration, "iterations": None, "think_time": None,
                "rate": self.rate, "stages": None}


@dataclass(frozen=True)
class RampingRate(_Arrivals):
    """Arrival rate moving linearly through ``stages`` of (target rate, seconds), from
    ``start_rate``."""

    stages: list[tuple[float, float]]
    max_users: int = 1000
    start_rate: float = 0.0
    max_wait: float | None = None
    phase: float = 0.0
    model: str = field(default="ramping", init=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("RampingRate needs at least one (rate, seconds) stage")
        object.__setattr__(self, "stages", [(float(r), float(s)) for r, s in self.stages])
        if any(r < 0 or s <= 0 for r, s in self.stages):
            raise ValueError("stage rates must be >= 0 and stage durations > 0")

    @property
    def duration(self) -> float:
        return sum(s for _, s in self.stages)

    def split(self, n: int) -> list[RampingRate]:
        _check_n(n)
        rates = [_split_float(r, n) for r, _ in self.stages]
        starts = _split_float(self.start_rate, n)
        users = _split_int(self.max_users, n)
        return [
            replace(self, stages=[(rates[j][i], s) for j, (_, s) in enumerate(self.stages)],
                    start_rate=starts[i], max_users=users[i], phase=(self.phase + i) / n)
            for i in range(n)
        ]

    def scaled(self, *, users: float = 1.0, duration: float = 1.0,
               rate: float = 1.0) -> RampingRate:
        return replace(self, stages=[(r * rate, s * duration) for r, s in self.stages],
                       start_rate=self.start_rate * rate,
                       max_users=max(1, round(self.max_users * users)))

    def planned_duration(self) -> float | None:
        return self.duration

    def arrival_offsets(self) -> Iterator[float]:
        """Arrival k happens when the integral of the rate reaches k + phase."""
        t_base, done, r0 = 0.0, 0.0, self.start_rate
        k = 0
        for r1, length in self.stages:
            stage_total = (r0 + r1) / 2 * length
            a = (r1 - r0) / (2 * length)
            while k + self.phase < done + stage_total:
                need = k + self.phase - done
                if abs(a) < 1e-12:
                    t = need / r0
                else:
                    t = (-r0 + math.sqrt(max(0.0, r0 * r0 + 4 * a * need))) / (2 * a)
                yield t_base + min(t, length)
                k += 1
            t_base += length
            done += stage_total
            r0 = r1

    def to_dict(self) -> dict[str, Any]:
        return {"model": "ramping", "users": None, "max_users": self.max_users,
                "ramp_up": None, "duration": self.duration, "iterations": None,
                "think_time": None, "rate": None, "start_rate": self.start_rate,
                "stages": [[r, s] for r, s in self.stages]}


def workload_from_dict(d: dict[str, Any]) -> Closed | Open | RampingRate:
    """Rebuild a workload from ``to_dict()`` output (phase is not kept)."""
    model = d.get("model")
    if model == "closed":
        think = d.get("think_time")
        return Closed(users=int(d["users"]), duration=d.get("duration"),
                      ramp_up=float(d.get("ramp_up") or 0.0), iterations=d.get("iterations"),
                      think_time=tuple(think) if isinstance(think, list) else think)
    if model == "open":
        return Open(rate=float(d["rate"]), duration=float(d["duration"]),
                    max_users=int(d.get("max_users") or 1000))
    if model == "ramping":
        return RampingRate(stages=[(r, s) for r, s in d["stages"]],
                           max_users=int(d.get("max_users") or 1000),
                           start_rate=float(d.get("start_rate") or 0.0))
    raise ValueError(f"unknown workload model {model!r}; valid: closed, open, ramping")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int) -> float:
    """``"90"``, ``"90s"``, ``"1m30s"``, ``"500ms"``, ``"1.5h"`` -> seconds (a float)."""
    if isinstance(text, int | float):
        return float(text)
    s = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.end() == pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"invalid duration {text!r}; use e.g. 30, 30s, 500ms, 2m, 1m30s, 1h")
    return total
