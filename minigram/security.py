"""Guards against hostile clients: security headers and request-body limits.

* `SecurityHeadersMiddleware` adds `HEADERS` (``X-Content-Type-Options: nosniff`` and
  friends) to every response, errors included.
* `BodyGuardMiddleware` refuses a body that is too large (413) as soon as that is known: from
  ``Content-Length`` before reading a byte, or while streaming once the count passes the limit,
  so memory stays bounded. It also gives the whole body ``timeout`` seconds to arrive: a client
  that trickles its body gets 408 instead of holding a worker's slot for ever.
* Request heads and idle connections are bounded below the app, in the HTTP protocol
  (`minigram.http_guard`); login attempts are throttled by `minigram.login_limits`.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minigram.errors import ApiError, error_response

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_RAW_HEADERS = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS.items()]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", ()))
                present = {name.lower() for name, _ in raw}
                raw += [pair for pair in _RAW_HEADERS if pair[0] not in present]
                message["headers"] = raw
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

