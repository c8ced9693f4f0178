"""Journeys and the virtual users that play them."""

from __future__ import annotations

import asyncio
import json as _json
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any
from urllib.parse import urlencode

from pytest_minigram.load.client import ClientError, Connection, FileSpec, Response, Target
from pytest_minigram.load.recorder import Recorder

__all__ = ["Journey", "RequestFailed", "ThinkTime", "VirtualUser", "think_seconds"]

ThinkTime = float | tuple[float, float] | None
Step = Callable[["VirtualUser"], Awaitable[None]]


class RequestFailed(Exception):
    """Raised by ``Response.json()`` (or ``raise_for_status``) on a request that failed.

    The failure is already in the statistics; the runner ends the iteration quietly.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(f"request failed: {response.error or response.status}")
        self.response = response


@dataclass(frozen=True)
class Journey:
    """What one virtual user does: ``on_start`` once, then ``iteration`` again and again.

    ``think_time`` (seconds, or a (low, high) range drawn uniformly) is slept between iterations
    unless the workload sets its own.
    """

    name: str
    iteration: Step
    on_start: Step | None = None
    think_time: ThinkTime = None
    description: str = ""


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
    ) -> None:
        self.id = user_id
        self.state: dict[str, Any] = {}
        self.params: Mapping[str, Any] = params or {}
        self.rng = random.Random(user_id if seed is None else seed)
        # headers sent with every request of this user, e.g. Authorization after login
        self.headers: dict[str, str] = {}
        self._conn = Connection(target, timeout)
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
        """Send one request and record it under ``name`` (default ``"METHOD path"``).

        Statuses outside 2xx/3xx are errors unless listed in ``expect``. Transport failures
        (timeout, refused, reset, protocol) come back as a Response with status 0 and
        ``error`` set; they never raise.
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
        label = name or f"{method} {path}"
        start = perf_counter()
        try:
            status, raw_headers, content, timing = await conn.request(payload)
        except ClientError as exc:
            latency = perf_counter() - start
            self._recorder.record(label, latency, lag, True)
            self._recorder.error(exc.kind, f"{method} {path} -> {exc.detail}")
            return Response(0, [], b"", ok=False, error=exc.kind)
        latency = perf_counter() - start
        ok = 200 <= status < 400 or status in expect
        self._recorder.record(label, latency, lag, not ok, timing)
        if not ok:
            self._recorder.error(
                f"status:{status}",
                lambda: f"{method} {path} -> {status} {content[:300].decode('utf-8', 'replace')}",
            )
            return Response(status, raw_headers, content, ok=False, error=f"status:{status}")
        return Response(status, raw_headers, content)


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
