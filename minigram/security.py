"""Guards against hostile clients: security headers, request-body limits, login rate limits.

* `SecurityHeadersMiddleware` adds `HEADERS` (``X-Content-Type-Options: nosniff`` and
  friends) to every response, errors included.
* `BodyGuardMiddleware` refuses a body that is too large (413) as soon as that is known: from
  ``Content-Length`` before reading a byte, or while streaming once the count passes the limit,
  so memory stays bounded. It also gives the whole body ``timeout`` seconds to arrive: a client
  that trickles its body gets 408 instead of holding a worker's slot for ever.
* `LoginLimiter` counts failed logins per username and per client address in a sliding window;
  past the limit, login answers 429 with ``Retry-After`` (even with the right password) until
  the window frees up. Only failures count, so load tests that log in many users succeed.
  Loopback addresses are exempt from the per-address limit by default (load tests come from
  127.0.0.1), never from the per-username one; ``MINIGRAM_LOGIN_IP_EXEMPT=`` turns that off.
  Counts live in each worker process: with N workers an address gets at most N times the
  limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minigram.errors import ApiError, error_response

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")


class BodyGuardMiddleware:
    """413 for bodies over ``max_body`` bytes, 408 for bodies slower than ``timeout`` seconds.

    The timeout counts from the request's first read of its body, for the whole body (a
    client sending one byte a second never finishes a large body). Once the body is complete,
    ``receive`` is passed through untouched (responses wait on it for the disconnect).
    """

    def __init__(self, app: ASGIApp, max_body: int, timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0:
                    response = error_response(400, "bad_request", "invalid Content-Length")
                    await response(scope, receive, send)
                    return
                if length > self.max_body:
                    exc = body_too_large(self.max_body)
                    response = error_response(413, exc.code, exc.detail, {"Connection": "close"})
                    await response(scope, receive, send)
                    return

        received = 0
        complete = False
        deadline: float | None = None

        async def guarded_receive() -> Message:
            nonlocal received, complete, deadline
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.timeout
            remaining = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except TimeoutError:
                raise ApiError(
                    408,
                    "request_timeout",
                    f"the body did not arrive within {self.timeout:g} s",
                    {"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise body_too_large(self.max_body)
                if not message.get("more_body", False):
                    complete = True
            else:
                complete = True
            return message

        await self.app(scope, guarded_receive, send)


LOOPBACK = ("127.0.0.1", "::1")


class SlidingWindow:
    """Timestamps of events per key over the last ``window`` seconds, for at most
    ``max_keys`` keys (the least recently touched go first)."""

    def __init__(
        self,
        limit: int,
        window: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _prune(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it is under the limit."""
        if self.limit <= 0:
            return None
        now = self.clock()
        events = self._prune(key, now)
        if events is None or len(events) < self.limit:
            return None
        return events[-self.limit] + self.window - now

    def add(self, key: str) -> None:
        if self.limit <= 0:
            return
        now = self.clock()
        events = self._prune(key, now)
        if events is None:
            events = self._events[key] = deque(maxlen=self.limit)
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        events.append(now)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


class LoginLimiter:
    """Failed logins per username and per client address (see the module docstring)."""

    def __init__(
        self,
        per_user: int,
        per_ip: int,
        window: float,
        exempt_ips: Iterable[str] = LOOPBACK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = SlidingWindow(per_user, window, clock=clock)
        self.ips = SlidingWindow(per_ip, window, clock=clock)
        self.exempt_ips = frozenset(exempt_ips)

    @staticmethod
    def _user_key(username: str) -> str:
        # Valid usernames have at most 30 characters: longer ones cannot log in anyway, and
        # truncating keeps hostile 64 KB names from filling memory.
        return username[:64].lower()

    def check(self, username: str, ip: str) -> None:
        """Raise 429 with ``Retry-After`` if either count is at its limit."""
        waits = [self.users.retry_after(self._user_key(username))]
        if ip not in self.exempt_ips:
            waits.append(self.ips.retry_after(ip))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed logins; retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def failed(self, username: str, ip: str) -> None:
        self.users.add(self._user_key(username))
        if ip not in self.exempt_ips:
            self.ips.add(ip)

    def succeeded(self, username: str) -> None:
        self.users.clear(self._user_key(username))


def login_limiter(request: Request) -> LoginLimiter:
    """The app's limiter, made from its settings on first use (one per worker process)."""
    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        settings = state.settings
        limiter = state.login_limiter = LoginLimiter(
            settings.login_user_limit,
            settings.login_ip_limit,
            settings.login_window,
            settings.login_ip_exempt,
        )
    return limiter


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
