"""Load shedding: a bounded number of requests in progress per worker, and a small queue.

Past its capacity a server that accepts everything only piles up latency (and memory) until
clients time out. `LoadShedMiddleware` lets ``max_concurrency`` requests run at once; up to
``max_queue`` more wait for a slot, first come first served, for at most ``queue_timeout``
seconds. Anything beyond that is answered at once with ``503 {"error": "overloaded"}`` and
``Retry-After``, which costs the server next to nothing. ``/healthz`` and ``/metrics`` are
never shed, so an overloaded server can still be watched.

The limits are per worker process (each has its own event loop); ``max_concurrency = 0``
turns shedding off.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from minigram.errors import error_response

#: Paths that are never queued or shed: watching a server must work when it is overloaded.
EXEMPT = frozenset({"/healthz", "/metrics", "/metrics.html"})


class Limiter:
    """``max_concurrency`` slots and a FIFO queue of at most ``max_queue`` waiters."""

    def __init__(self, max_concurrency: int, max_queue: int, queue_timeout: float) -> None:
        if max_concurrency < 1 or max_queue < 0 or queue_timeout < 0:
            raise ValueError("need max_concurrency >= 1, max_queue >= 0, queue_timeout >= 0")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.active = 0
        self.shed = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """Take a slot (waiting in the queue if need be); False means: shed this request."""
        if self.active < self.max_concurrency and not self._waiters:
            self.active += 1
            return True
        if len(self._waiters) >= self.max_queue or self.queue_timeout == 0:
            self.shed += 1
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we gave up: pass it on.
                self.release()
            else:
                waiter.cancel()
                self._remove(waiter)
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.shed += 1
            return False
        return True  # release() handed its slot to us: ``active`` is unchanged

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass


class LoadShedMiddleware:
    """Run at most ``max_concurrency`` HTTP requests at once; queue a few, shed the rest."""

    def __init__(
        self,
        app: ASGIApp,
        max_concurrency: int = 0,
        max_queue: int = 0,
        queue_timeout: float = 0.0,
        retry_after: int = 1,
        exempt: Collection[str] = EXEMPT,
    ) -> None:
        self.app = app
        self.retry_after = retry_after
        self.exempt = frozenset(exempt)
        self.limiter = (
            Limiter(max_concurrency, max_queue, queue_timeout) if max_concurrency > 0 else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiter
        if limiter is None or scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if not await limiter.acquire():
            response = error_response(
                503,
                "overloaded",
                "the server is at capacity; retry later",
                {"Retry-After": str(self.retry_after)},
            )
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            limiter.release()
