"""Journeys and the virtual users that play them."""

from __future__ import annotations

import asyncio
import inspect
import json as _json
import math
import random
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from functools import lru_cache
from itertools import accumulate
from time import perf_counter
from typing import Any, TypeVar, overload
from urllib.parse import urlencode

from pytest_minigram.load.client import (
    IDEMPOTENT_METHODS,
    ClientError,
    Connection,
    ConnectionTimes,
    FileSpec,
    RequestFailed,
    Response,
    Target,
)
from pytest_minigram.load.recorder import Recorder

__all__ = ["Journey", "JourneyLike", "RequestFailed", "Step", "ThinkTime", "VirtualUser",
           "as_journey", "default_name", "task", "think_seconds"]

ThinkTime = float | tuple[float, float] | None
Step = Callable[["VirtualUser"], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Awaitable[None]])
S = TypeVar("S", bound=Step)  # Mapping keys are invariant: {fn: 3} is a dict of fn's own type
_WEIGHT = "_minigram_task_weight"


@overload
def task(weight: F, /) -> F: ...


@overload
def task(weight: float = 1.0, /) -> Callable[[F], F]: ...


def task(weight: float | F = 1.0, /) -> F | Callable[[F], F]:
    """Mark a method of a :class:`Journey` subclass as one of its tasks: ``@task`` or
    ``@task(3)``. Each iteration runs one task, drawn by weight from the user's seeded rng."""
    if callable(weight):
        setattr(weight, _WEIGHT, 1.0)
        return weight
    w = _check_weight(weight, "task()")

    def mark(fn: F) -> F:
        setattr(fn, _WEIGHT, w)
        return fn

    return mark


def _check_weight(weight: Any, what: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
            math.isfinite(weight) and weight > 0):
        raise ValueError(f"{what}: a task weight must be a finite number > 0, got {weight!r}")
    return float(weight)


class Journey:
    """What one virtual user does: ``on_start`` once, then iterations, then ``on_stop`` once.

    Functional form: ``Journey("shop", iteration)``, or weighted tasks
    ``Journey("shop", tasks={browse: 3, buy: 1}, on_start=login, on_stop=logout)``; each
    iteration then runs one task drawn by weight from the user's seeded rng.

    Class form: subclass with ``on_start``/``on_stop``/``iteration`` methods or ``@task``
    methods, and optional class attributes ``name`` (default: the class name),
    ``think_time`` and ``description``; instantiate it with no arguments (``as_journey`` and
    ``run`` accept the class itself).

    ``on_start`` runs before the user's first iteration and again before the next one until it
    succeeds. ``on_stop`` runs once for every user whose ``on_start`` succeeded (or that has
    none), when the workload releases it and for every user still there when the run ends,
    including an early stop; its requests are recorded. ``think_time`` (seconds, or a (low,
    high) range drawn uniformly) is slept between iterations unless the workload sets its own.
    """

    name: str
    iteration: Step
    on_start: Step | None
    on_stop: Step | None
    tasks: tuple[tuple[Step, float], ...]
    think_time: ThinkTime = None
    description: str = ""

    def __init__(
        self,
        name: str | None = None,
        iteration: Step | None = None,
        on_start: Step | None = None,
        think_time: ThinkTime = None,
        description: str | None = None,
        *,
        on_stop: Step | None = None,
        tasks: Mapping[S, float] | Iterable[tuple[S, float]] | None = None,
    ) -> None:
        cls = type(self)
        subclass = cls is not Journey
        self.name = name or (cls.__dict__.get("name") or cls.__name__ if subclass else "")
        if not self.name:
            raise ValueError("a Journey needs a name")
        self.on_start = on_start or (getattr(self, "on_start", None) if subclass else None)
        self.on_stop = on_stop or (getattr(self, "on_stop", None) if subclass else None)
        if think_time is not None or not subclass:
            self.think_time = think_time
        if description is not None or not subclass:
            self.description = description or ""
        if tasks is not None:
            items = list(tasks.items() if isinstance(tasks, Mapping) else tasks)
        elif subclass:
            items = [(getattr(self, attr), w) for attr, w in _task_methods(cls).items()]
        else:
            items = []
        step = iteration or (getattr(self, "iteration", None) if subclass else None)
        if step is not None and items:
            raise TypeError(f"journey {self.name!r}: give an iteration or tasks, not both")
        for fn in [step, self.on_start, self.on_stop, *(f for f, _ in items)]:
            if fn is not None and not callable(fn):
                raise TypeError(f"journey {self.name!r}: {fn!r} is not callable")
        self.tasks = tuple((fn, _check_weight(w, f"journey {self.name!r}")) for fn, w in items)
        if step is None and not self.tasks:
            raise TypeError(f"journey {self.name!r} has nothing to do: give it an iteration, "
                            "tasks, or @task methods")
        if step is None:
            steps = [fn for fn, _ in self.tasks]
            cum = list(accumulate(w for _, w in self.tasks))
            if len(steps) == 1:
                step = steps[0]
            else:
                async def weighted(user: VirtualUser) -> None:
                    await user.rng.choices(steps, cum_weights=cum)[0](user)

                step = weighted
        self.iteration = step

    def __repr__(self) -> str:
        what = f"tasks={[(getattr(f, '__name__', f), w) for f, w in self.tasks]}" if (
            self.tasks) else f"iteration={getattr(self.iteration, '__name__', self.iteration)}"
        return f"<{type(self).__name__} {self.name!r} {what}>"


def _task_methods(cls: type) -> dict[str, float]:
    found: dict[str, float] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            weight = getattr(value, _WEIGHT, None)
            if weight is not None:
                found[attr] = weight
            else:
                found.pop(attr, None)  # overridden without @task
    return found


JourneyLike = Journey | type[Journey] | Callable[["VirtualUser"], Awaitable[None]]


def as_journey(obj: object) -> Journey:
    """A Journey from a Journey, a Journey subclass, or an ``async def visit(user)`` function
    (named after the function); a TypeError naming ``obj`` for anything else."""
    if isinstance(obj, Journey):
        return obj
    if isinstance(obj, type) and issubclass(obj, Journey):
        try:
            return obj()
        except TypeError as exc:
            raise TypeError(f"cannot make a journey of {obj.__qualname__}: {exc}") from None
    if callable(obj) and not isinstance(obj, type):
        if not inspect.iscoroutinefunction(obj):
            raise TypeError(f"{obj!r} is not a journey: a journey function must be an "
                            "'async def' taking the virtual user")
        try:
            inspect.signature(obj).bind(None)
        except TypeError:
            raise TypeError(f"{obj!r} is not a journey: it must take exactly one argument, "
                            "the virtual user") from None
        except ValueError:  # no signature to inspect (a builtin): let it run
            pass
        name = getattr(obj, "__name__", None) or type(obj).__name__
        doc = (inspect.getdoc(obj) or "").partition("\n")[0]
        return Journey(name, obj, description=doc)
    raise TypeError(f"{obj!r} is not a journey: expected a Journey, a Journey subclass or an "
                    "async function taking the virtual user")


_ID_SEGMENT = re.compile(r"\d+|(?=.*\d).{8,}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@lru_cache(maxsize=4096)
def default_name(method: str, path: str) -> str:
    """The action name of a request sent without ``name=``, addressable by the threshold
    grammar (``get_items.p95 < 100ms``): the lower-case method and the path's segments joined
    by ``_``, query and fragment dropped, other characters than letters, digits, ``_`` and
    ``-`` replaced by ``_``. A segment that looks like an id, all digits or at least 8
    characters with a digit in them (UUIDs, hashes, dates, ``seed_user_12``), becomes ``id``,
    so that ``GET /photos/17?x=1`` and ``GET /photos/18`` are both ``get_photos_id``.
    Names that are not ids (``/users/alice``) stay: name such requests yourself. ``/`` is
    ``root``.
    """
    path = path.partition("?")[0].partition("#")[0]
    parts = [method.lower()]
    for segment in path.split("/"):
        if not segment:
            continue
        if _ID_SEGMENT.fullmatch(segment):
            parts.append("id")
        else:
            cleaned = _UNSAFE.sub("_", segment).strip("_")
            if cleaned:
                parts.append(cleaned)
    if len(parts) == 1:
        parts.append("root")
    return _UNSAFE.sub("_", "_".join(parts))[:80]


def think_seconds(think: ThinkTime, rng: random.Random) -> float:
    if think is None:
        return 0.0
    if isinstance(think, tuple):
        low, high = think
        return rng.uniform(low, high)
    return float(think)


class VirtualUser:
    """One simulated user: a keep-alive connection, a token or two in ``state``, a seeded rng."""

    __slots__ = ("id", "state", "params", "rng", "headers", "started", "_conn", "_recorder",
                 "_lag")

    def __init__(
        self,
        user_id: int,
        target: Target,
        recorder: Recorder,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        seed: int | None = None,
        times: ConnectionTimes | None = None,
    ) -> None:
        self.id = user_id
        self.state: dict[str, Any] = {}
        self.params: Mapping[str, Any] = params or {}
        self.rng = random.Random(user_id if seed is None else seed)
        # headers sent with every request of this user, e.g. Authorization after login
        self.headers: dict[str, str] = {}
        self._conn = Connection(target, timeout, times)
        self._recorder = recorder
        self._lag = 0.0
        # set once on_start succeeded
        self.started = False

    def close(self) -> None:
        self._conn.close()

    async def think(self, seconds: float | tuple[float, float]) -> None:
        await asyncio.sleep(think_seconds(seconds, self.rng))

    async def get(self, path: str, *, params: Mapping[str, Any] | None = None,
                  name: str | None = None, headers: Mapping[str, str] | None = None,
                  expect: Collection[int] = ()) -> Response:
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params)}"
        return await self.request("GET", path, name=name, headers=headers, expect=expect)

    async def post(self, path: str, *, json: Any = None, data: Mapping[str, str] | bytes | None
                   = None, files: Mapping[str, FileSpec] | None = None, name: str | None = None,
                   headers: Mapping[str, str] | None = None,
                   expect: Collection[int] = ()) -> Response:
        return await self.request("POST", path, json=json, data=data, files=files, name=name,
                                  headers=headers, expect=expect)

    async def put(self, path: str, *, json: Any = None, data: Mapping[str, str] | bytes | None
                  = None, name: str | None = None, headers: Mapping[str, str] | None = None,
                  expect: Collection[int] = ()) -> Response:
        return await self.request("PUT", path, json=json, data=data, name=name, headers=headers,
                                  expect=expect)

    async def patch(self, path: str, *, json: Any = None,
                    data: Mapping[str, str] | bytes | None = None, name: str | None = None,
                    headers: Mapping[str, str] | None = None,
                    expect: Collection[int] = ()) -> Response:
        return await self.request("PATCH", path, json=json, data=data, name=name,
                                  headers=headers, expect=expect)

    async def delete(self, path: str, *, name: str | None = None,
                     headers: Mapping[str, str] | None = None,
                     expect: Collection[int] = ()) -> Response:
        return await self.request("DELETE", path, name=name, headers=headers, expect=expect)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | bytes | None = None,
        files: Mapping[str, FileSpec] | None = None,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Collection[int] = (),
    ) -> Response:
        """Send one request and record it under ``name`` (default: :func:`default_name`).

        Statuses outside 2xx/3xx are errors unless listed in ``expect``; such an expected
        status is counted in the action's ``expected`` (by status), not in its errors.
        Transport failures (timeout, refused, reset, tls, protocol) come back as a Response
        with status 0 and ``error`` set; they never raise. The recorded latency excludes the
        time spent opening a connection (see ``Result.connect`` and ``Result.tls``).
        """
        body, ctype = _body(json, data, files)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        all_headers: Mapping[str, str] | None = self.headers
        if headers or ctype:
            merged = dict(self.headers)
            if ctype:
                merged["Content-Type"] = ctype
            if headers:
                merged.update(headers)
            all_headers = merged
        conn = self._conn
        payload = conn.build(method, path, all_headers, body)
        lag = self._lag
        self._lag = 0.0
        label = name or default_name(method, path)
        recorder = self._recorder
        start = perf_counter()
        try:
            status, raw_headers, content, timing = await conn.request(
                payload, method in IDEMPOTENT_METHODS)
        except ClientError as exc:
            latency = perf_counter() - start - conn.setup
            recorder.record(label, latency, lag, True)
            recorder.error(exc.kind, f"{method} {path} -> {exc.detail}")
            return Response(0, [], b"", ok=False, error=exc.kind)
        latency = perf_counter() - start - conn.setup
        if 200 <= status < 400:
            recorder.record(label, latency, lag, False, timing)
            return Response(status, raw_headers, content)
        if status in expect:
            recorder.record(label, latency, lag, False, timing)
            recorder.actions[label].count_expected(status)
            recorder.total.count_expected(status)
            return Response(status, raw_headers, content, expected=True)
        recorder.record(label, latency, lag, True, timing)
        recorder.error(
            f"status:{status}",
            lambda: f"{method} {path} -> {status} {content[:300].decode('utf-8', 'replace')}",
        )
        return Response(status, raw_headers, content, ok=False, error=f"status:{status}")


def _body(json: Any, data: Mapping[str, str] | bytes | None,
          files: Mapping[str, FileSpec] | None) -> tuple[bytes | None, str | None]:
    if files is not None:
        from pytest_minigram.load.client import encode_multipart

        fields = data if isinstance(data, Mapping) else None
        ctype, body = encode_multipart(fields, files)
        return body, ctype
    if json is not None:
        return _json.dumps(json, separators=(",", ":")).encode("utf-8"), "application/json"
    if isinstance(data, bytes):
        return data, "application/octet-stream"
    if data is not None:
        return urlencode(data).encode("ascii"), "application/x-www-form-urlencoded"
    return None, None
