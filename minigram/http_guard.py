"""Bounded request heads and idle connections, for uvicorn's httptools and h11 protocols.

uvicorn arms no timer on a connection until it has sent a first response, and its httptools
protocol puts no limit on the request head: a connection that sends nothing, or half a head,
stays open for ever, and one that sends an endless header grows the worker's memory without
bound (httptools keeps an unfinished header value whole until it ends). The protocols here
add, per connection:

* a head limit: the request line and headers may take ``max_bytes``; past it the client
  gets a JSON 431 and the connection is closed. Bytes are counted as they arrive, while the
  head is unfinished, so an unfinished head is refused as soon as it is too long;
* a head timer: a head must be complete ``timeout`` seconds after the connection opened or
  after its first byte arrived. A connection that sent part of a head gets a JSON 408, one
  that sent nothing is closed. Idle keep-alive connections are uvicorn's
  ``timeout_keep_alive``.

A head that arrives whole in one read arms no timer of its own, so the guard costs a
keep-alive request two counter updates. `protocol_for` picks the class for the settings.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
from dataclasses import dataclass
from typing import Any

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from minigram.security import HEADERS
from minigram.settings import Settings


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int
    timeout: float


def error_bytes(status: int, code: str, detail: str) -> bytes:
    """A complete ``Connection: close`` response with the app's JSON error body."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name.lower()}: {value}" for name, value in HEADERS.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head that is over the limit."""


class _HeadGuard:
    """The timer and the refusals, shared by both protocols; they say where a head is."""

    limits: HeadLimits
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def _awaiting_head(self) -> bool:
        raise NotImplementedError

    def _head_started(self) -> bool:
        raise NotImplementedError

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if self._head_started():
            detail = f"the request head did not arrive within {self.limits.timeout:g} s"
            self._refuse(408, "request_timeout", detail)
        else:
            self.transport.close()

    def _count_head_bytes(self, n: int) -> bool:
        """Add ``n`` bytes to the unfinished head; False (and refused) once it is too long."""
        self._head_bytes += n
        if self._head_bytes > self.limits.max_bytes:
            self._refuse_too_large()
            return False
        return True

    def _refuse_too_large(self) -> None:
        detail = f"the request head is larger than {self.limits.max_bytes} bytes"
        self._refuse(431, "headers_too_large", detail)

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._cancel_head_timer()
        if self.cycle is None or self.cycle.response_complete:  # no response is being written
            self.transport.write(error_bytes(status, code, detail))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", "the request is not valid HTTP/1.1")


class GuardedHttpToolsProtocol(_HeadGuard, HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = True  # the next bytes belong to a request head
        self._head_seen = False  # ... and some of them came
        self._heads = 0  # heads completed on this connection

    def _awaiting_head(self) -> bool:
        return self._in_head

    def _head_started(self) -> bool:
        return self._head_seen

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        heads = self._heads
        in_head = self._in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_too_large()
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("")
            return
        if not self._in_head:
            return
        # The whole read belongs to the unfinished head unless a head completed during it.
        if in_head and heads == self._heads and not self._count_head_bytes(len(data)):
            return
        if self._head_seen:
            self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._head_seen = True

    def on_message_complete(self) -> None:
        self._in_head = True  # whatever comes next starts a head
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_bytes:
            raise _HeadTooLarge
        self._cancel_head_timer()
        self._in_head = self._head_seen = False
        self._head_bytes = 0
        self._heads += 1
        super().on_headers_complete()


class GuardedH11Protocol(_HeadGuard, H11Protocol):
    """h11 keeps the unfinished head in its receive buffer and refuses it past its
    ``max_incomplete_event_size``, set to the limit; that refusal is answered as a 431. Unlike
    the httptools guard, a head over the limit that arrives complete in one read (at most
    256 KiB) is let through, as h11 itself does."""

    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_bytes)
        self._over = False  # the read being parsed takes an unfinished head past the limit

    def send_400_response(self, msg: str) -> None:
        if self._over:
            self._refuse_too_large()
        else:
            super().send_400_response(msg)

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _head_started(self) -> bool:
        return self._head_bytes > 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_head = self._awaiting_head()
        self._over = in_head and self._head_bytes + len(data) > self.limits.max_bytes
        super().data_received(data)
        if self.transport.is_closing():
            return
        if not self._awaiting_head():
            self._cancel_head_timer()
            self._head_bytes = 0
        elif in_head and self._count_head_bytes(len(data)):
            self._arm_head_timer()


IMPLEMENTATIONS: dict[str, type[_HeadGuard]] = {
    "httptools": GuardedHttpToolsProtocol,
    "h11": GuardedH11Protocol,
}


def protocol_for(settings: Settings) -> Any:
    """What ``uvicorn.run(http=...)`` takes: the settings' protocol class with its limits
    (a partial of an importable class, so it pickles into uvicorn's worker processes)."""
    limits = HeadLimits(settings.max_header_bytes, settings.header_timeout)
    return functools.partial(IMPLEMENTATIONS[settings.http], limits=limits)
