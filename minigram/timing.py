"""Where a request's time went: the ``Server-Timing`` header, and injected faults.

`ServerTimingMiddleware` puts a fresh `Timings` in a context variable for each request. The
database, cache and password-hash wrappers add to it through `timed()`; anyio copies the
context into worker threads, so time spent in `run_in_threadpool` is counted too. When the
response starts, the middleware applies any configured fault, then writes
``Server-Timing: db;dur=…, cache;dur=…, hash;dur=…, app;dur=…, total;dur=…`` (milliseconds;
``app`` is what is left of ``total`` after the other three, so the parts add up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minigram.settings import Fault

logger = logging.getLogger("minigram")

Kind = Literal["db", "cache", "hash"]


@dataclass
class Timings:
    """Seconds spent per component during one request."""

    db: float = 0.0
    cache: float = 0.0
    hash: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def add(self, kind: Kind, seconds: float) -> None:
        setattr(self, kind, getattr(self, kind) + seconds)

    def header(self, elapsed: float) -> str:
        """``app`` is the rest of the time (our own code), so db+cache+hash+app = total."""
        app = max(elapsed - self.db - self.cache - self.hash, 0.0)
        return (
            f"db;dur={self.db * 1000:.2f}, cache;dur={self.cache * 1000:.2f}, "
            f"hash;dur={self.hash * 1000:.2f}, app;dur={app * 1000:.2f}, "
            f"total;dur={elapsed * 1000:.2f}"
        )


_current: ContextVar[Timings | None] = ContextVar("minigram_timings", default=None)


def current() -> Timings | None:
    """The timings of the request being handled, or None outside a request."""
    return _current.get()


def add(kind: Kind, seconds: float) -> None:
    timings = _current.get()
    if timings is not None:
        timings.add(kind, seconds)


@contextmanager
def timed(kind: Kind) -> Iterator[None]:
    """Count the time spent in the block against ``kind`` for the current request."""
    start = time.perf_counter()
    try:
        yield
    finally:
        add(kind, time.perf_counter() - start)


def route_name(scope: Scope) -> str:
    """The name of the route that handled ``scope`` (the router records it), or ``unmatched``."""
    route = scope.get("route")
    name = getattr(route, "name", None)
    return name if isinstance(name, str) else "unmatched"


def burn_cpu(seconds: float) -> None:
    """Busy-loop for ``seconds`` of wall time, holding the GIL and the event loop."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


async def sleep_precisely(seconds: float) -> None:
    """Sleep ``seconds`` to the microsecond, letting other requests run meanwhile.

    The event loop's timers count whole milliseconds (libuv's under uvloop; asyncio's
    selector rounds similarly), so ``asyncio.sleep(0.0006)`` takes about 1.1 ms: an injected
    ``delay=25%`` on a 2.4 ms handler would add 45 %. The last stretch yields to the loop
    until the deadline instead; when no other request is waiting, that stretch (at most
    2 ms) spins on the CPU, which the server's CPU figures then include.
    """
    deadline = time.perf_counter() + seconds
    if seconds > 0.002:
        await asyncio.sleep(seconds - 0.002)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0)


#: Called once per response: (endpoint, method, status, app seconds, timings).
Observer = Callable[[str, str, int, float, Timings], None]


class ServerTimingMiddleware:
    """Time each HTTP request, apply faults, and add the ``Server-Timing`` header."""

    def __init__(
        self, app: ASGIApp, faults: tuple[Fault, ...] = (), observer: Observer | None = None
    ) -> None:
        self.app = app
        self.faults = faults
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timings = Timings()
        token = _current.set(timings)
        started = False

        async def send_with_timing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                endpoint = route_name(scope)
                if self.faults:
                    await self._inject(endpoint, time.perf_counter() - timings.start)
                elapsed = time.perf_counter() - timings.start
                MutableHeaders(scope=message).append("Server-Timing", timings.header(elapsed))
                if self.observer is not None:
                    self.observer(endpoint, scope["method"], message["status"], elapsed, timings)
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        except Exception:
            if not started:
                logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
                response = JSONResponse(
                    {"error": "internal_error", "detail": "the server failed"}, status_code=500
                )
                await response(scope, receive, send_with_timing)
            raise
        finally:
            _current.reset(token)

    async def _inject(self, endpoint: str, handled: float) -> None:
        for fault in self.faults:
            if fault.endpoint not in ("*", endpoint):
                continue
            extra = fault.extra(handled)
            if extra <= 0:
                continue
            if fault.kind == "cpu":
                burn_cpu(extra)
            else:
                await sleep_precisely(extra)
