"""A thin HTTP/1.1 keep-alive client: asyncio protocol + httptools parser.

One :class:`Connection` per virtual user. The hot path allocates one future, one timer handle
and the response parts; everything else is prepared once per connection.
"""

from __future__ import annotations

import asyncio
import json as _json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools

__all__ = [
    "ClientError",
    "Connection",
    "Response",
    "Target",
    "encode_multipart",
]

FileSpec = bytes | tuple[str, bytes] | tuple[str, bytes, str]


class ClientError(Exception):
    """A request that produced no HTTP response; ``kind`` is the error class of the schema."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Target:
    """The parsed base URL every request of a run goes to (and nowhere else)."""

    __slots__ = ("url", "host", "port", "prefix", "host_header")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// targets are supported, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"target has no host: {url!r}")
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.encode("latin-1")


class Response:
    """A received response. ``ok`` is decided by the caller's ``expect``."""

    __slots__ = ("status", "raw_headers", "body", "ok", "error")

    def __init__(
        self,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        ok: bool = True,
        error: str | None = None,
    ) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self.body = body
        self.ok = ok
        self.error = error

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.raw_headers}

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """Decode the body; a failed request raises :class:`RequestFailed` instead.

        The failure is already counted, so journeys may simply chain ``.json()`` and let the
        iteration stop at the first failed step.
        """
        if not self.ok:
            from pytest_minigram.load.journey import RequestFailed

            raise RequestFailed(self)
        return _json.loads(self.body)

    def raise_for_status(self) -> None:
        if not self.ok:
            from pytest_minigram.load.journey import RequestFailed

            raise RequestFailed(self)

    def __repr__(self) -> str:
        extra = f" {self.error}" if self.error else ""
        return f"<Response {self.status} {len(self.body)} bytes{extra}>"


class _Protocol(asyncio.Protocol):
    """Feeds bytes to httptools and completes one future per response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.server_timing: bytes | None = None
        self.body: list[bytes] = []
        self.received = False
        self.closed = False
        self.keep_alive = True
        self.error: ClientError | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ClientError("protocol", f"{type(exc).__name__}: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None:
            detail = "server closed the connection"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        self._fail(ClientError("connection_reset", detail))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(name) == 13 and name.lower() == b"server-timing":
            self.server_timing = value if self.server_timing is None else (
                self.server_timing + b"," + value
            )

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        # must be read here: llhttp resets its flags once the callback returns
        self.keep_alive = self.parser.should_keep_alive()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: ClientError) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.error = error
            waiter.set_result(None)


class Connection:
    """A keep-alive connection to the target, reopened transparently when the server closes it.

    ``request`` returns ``(status, headers, body, server_timing)`` or raises
    :class:`ClientError`. A request that finds its reused connection closed before any byte of
    the response arrived is retried once on a fresh connection (the server dropped an idle
    keep-alive connection; the request was never processed).
    """

    __slots__ = ("target", "timeout", "_loop", "_proto", "_used", "_host_line")

    def __init__(self, target: Target, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._proto: _Protocol | None = None
        self._used = False
        self._host_line = b" HTTP/1.1\r\nHost: " + target.host_header + b"\r\n"

    async def _connect(self) -> _Protocol:
        proto = _Protocol()
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            async with asyncio.timeout(self.timeout):
                await self._loop.create_connection(lambda: proto, self.target.host,
                                                   self.target.port)
        except ConnectionRefusedError as exc:
            raise ClientError("connection_refused", str(exc)) from None
        except TimeoutError:
            raise ClientError("timeout", f"connect timed out after {self.timeout:g}s") from None
        except ConnectionResetError as exc:
            raise ClientError("connection_reset", str(exc)) from None
        except OSError as exc:
            raise ClientError("connection_refused", f"{type(exc).__name__}: {exc}") from None
        self._proto = proto
        self._used = False
        return proto

    def close(self) -> None:
        proto = self._proto
        self._proto = None
        if proto is not None and proto.transport is not None:
            proto.transport.close()

    def build(
        self, method: str, path: str, headers: Mapping[str, str] | None, body: bytes | None
    ) -> bytes:
        parts = [method.encode("ascii"), b" ", (self.target.prefix + path).encode("utf-8"),
                 self._host_line]
        if headers:
            for k, v in headers.items():
                parts.append(f"{k}: {v}\r\n".encode("latin-1"))
        if body is not None:
            parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
            parts.append(body)
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    async def request(
        self, payload: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bytes | None]:
        for attempt in (0, 1):
            proto = self._proto
            if proto is None or proto.closed:
                proto = await self._connect()
            reused = self._used
            proto.error = None
            proto.received = False
            proto.headers = []
            proto.body = []
            proto.server_timing = None
            waiter = self._loop.create_future()
            proto.waiter = waiter
            timer = self._loop.call_later(self.timeout, _expire, waiter)
            assert proto.transport is not None
            proto.transport.write(payload)
            try:
                await waiter
            finally:
                timer.cancel()
                proto.waiter = None
            self._used = True
            error = proto.error
            if waiter.result() is _TIMEOUT:
                self.close()
                raise ClientError("timeout", f"no response within {self.timeout:g}s")
            if error is not None:
                self.close()
                if attempt == 0 and reused and not proto.received and error.kind == (
                    "connection_reset"
                ):
                    continue
                raise error
            if not proto.keep_alive:
                self.close()
            body = proto.body
            return (
                proto.parser.get_status_code(),
                proto.headers,
                body[0] if len(body) == 1 else b"".join(body),
                proto.server_timing,
            )
        raise AssertionError("unreachable")


_TIMEOUT = object()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(_TIMEOUT)


def encode_multipart(
    fields: Mapping[str, str] | None, files: Mapping[str, FileSpec]
) -> tuple[str, bytes]:
    """Encode a ``multipart/form-data`` body (RFC 7578); returns (content type, body)."""
    boundary = os.urandom(16).hex()
    out: list[bytes] = []
    dash = b"--" + boundary.encode("ascii")
    for name, value in (fields or {}).items():
        out += [dash, b"\r\n", _disposition(name), b"\r\n\r\n", str(value).encode("utf-8"),
                b"\r\n"]
    for name, spec in files.items():
        if isinstance(spec, bytes):
            filename, data, ctype = name, spec, "application/octet-stream"
        elif len(spec) == 2:
            filename, data = spec  # type: ignore[misc]
            ctype = "application/octet-stream"
        else:
            filename, data, ctype = spec  # type: ignore[misc]
        out += [dash, b"\r\n", _disposition(name, filename), b"\r\n",
                b"Content-Type: " + ctype.encode("latin-1"), b"\r\n\r\n", data, b"\r\n"]
    out += [dash, b"--\r\n"]
    return f"multipart/form-data; boundary={boundary}", b"".join(out)


def _disposition(name: str, filename: str | None = None) -> bytes:
    def quote(s: str) -> str:
        return s.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace(
            "\n", "%0A"
        )

    text = f'Content-Disposition: form-data; name="{quote(name)}"'
    if filename is not None:
        text += f'; filename="{quote(filename)}"'
    return text.encode("utf-8")
