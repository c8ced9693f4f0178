"""A thin HTTP/1.1 keep-alive client: asyncio protocol + httptools parser, plain or TLS.

One :class:`Connection` per virtual user. The hot path allocates one future, one timer handle
and the response parts; everything else is prepared once per connection.
"""

from __future__ import annotations

import asyncio
import json as _json
import os
import socket
import ssl
import warnings
from collections.abc import Mapping
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import httptools

from pytest_minigram.load.result import Timing
from pytest_minigram.redact import redact_url

__all__ = [
    "IDEMPOTENT_METHODS",
    "ClientError",
    "Connection",
    "ConnectionTimes",
    "InsecureTargetWarning",
    "Response",
    "Target",
    "encode_multipart",
    "tls_context",
]

FileSpec = bytes | tuple[str, bytes] | tuple[str, bytes, str]

#: RFC 9110 section 9.2.2. Only these are ever sent a second time (see :class:`Connection`).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class ClientError(Exception):
    """A request that produced no HTTP response; ``kind`` is the error class of the schema."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class InsecureTargetWarning(UserWarning):
    """An ``https://`` target whose certificate is not verified (``verify=False``)."""


def tls_context(verify: bool = True, ca_bundle: str | os.PathLike[str] | None = None
                ) -> ssl.SSLContext:
    """The client context of a run: the system's CAs, or only ``ca_bundle``'s when given.

    ``verify=False`` turns off both the chain and the host name checks (self-signed staging
    certificates); the traffic is still encrypted.
    """
    if verify:
        ctx = ssl.create_default_context(cafile=None if ca_bundle is None else os.fspath(
            ca_bundle))
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Target:
    """The parsed base URL every request of a run goes to (and nowhere else).

    ``https://`` targets are verified against the system's CAs, or against ``ca_bundle`` (a
    PEM file) when given; ``verify=False`` skips verification and warns
    (:class:`InsecureTargetWarning`, once per target).
    """

    __slots__ = ("url", "scheme", "host", "port", "prefix", "host_header", "ssl", "addresses")

    def __init__(self, url: str, *, verify: bool = True,
                 ca_bundle: str | os.PathLike[str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"only http:// and https:// targets are supported, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"target has no host: {url!r}")
        self.url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.rpartition("@")[2].encode("latin-1")
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = tls_context(verify, ca_bundle)
            if not verify:
                warnings.warn(InsecureTargetWarning(
                    f"TLS certificate verification is off for {redact_url(self.url)}: anyone "
                    "on the path "
                    "can impersonate the target"), stacklevel=2)
        # resolved once, by the first connection of the run
        self.addresses: list[tuple[Any, ...]] | None = None


class ConnectionTimes:
    """Connection set-up of a run, timed apart from the requests: TCP connect, TLS handshake."""

    __slots__ = ("connect", "tls")

    def __init__(self) -> None:
        self.connect = Timing()
        self.tls = Timing()


class RequestFailed(Exception):
    """Raised by ``Response.json()`` (or ``raise_for_status``) on a request that failed.

    The failure is already in the statistics; the runner ends the iteration quietly.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(f"request failed: {response.error or response.status}")
        self.response = response


class Response:
    """A received response. ``ok`` is decided by the caller's ``expect``; ``expected`` is
    true for a status outside 2xx/3xx that the caller declared in ``expect``."""

    __slots__ = ("status", "raw_headers", "body", "ok", "error", "expected")

    def __init__(
        self,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        ok: bool = True,
        error: str | None = None,
        expected: bool = False,
    ) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self.body = body
        self.ok = ok
        self.error = error
        self.expected = expected

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
            raise RequestFailed(self)
        return _json.loads(self.body)

    def raise_for_status(self) -> None:
        if not self.ok:
            raise RequestFailed(self)

    def __repr__(self) -> str:
        extra = f" {self.error}" if self.error else " expected" if self.expected else ""
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
        self.head = False  # the request in flight is a HEAD: its answer has no body
        self.status = 0
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
        if self.head and (self.waiter is None or self.waiter.done()):
            # the parser waits for the body that Content-Length announced: start afresh
            self.head = False
            self.parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool:
        # the server will answer nothing more: never send another request on this connection
        self.closed = True
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

    def on_headers_complete(self) -> None:
        if self.head:
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        # must be read here: llhttp resets its flags once the callback returns
        self.keep_alive = self.parser.should_keep_alive()
        self.status = self.parser.get_status_code()
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
    :class:`ClientError`; ``setup`` is then the time that call spent opening connections (TCP
    connect and TLS handshake, also recorded in ``times``), which is not the request's.

    Resending: a connection the server closed while it was idle is noticed before the request
    is written (nothing was sent; a new connection is opened, no retry). When a reused
    connection is lost after the request was written but before any byte of the response, the
    server may have dropped the idle connection just before reading the request, or may have
    processed it and then died: the client cannot tell. Only an idempotent request
    (:data:`IDEMPOTENT_METHODS`, RFC 9110 section 9.2.2, which includes PUT and DELETE) is
    then sent once more on a fresh connection, as RFC 9112 section 9.3.1 permits; any other
    method fails with ``connection_reset`` and is never resent, so the server never sees a
    POST twice while the result counts it once.
    """

    __slots__ = ("target", "timeout", "times", "setup", "_loop", "_proto", "_used",
                 "_host_line", "_timer", "_deadline", "_waiter")

    def __init__(self, target: Target, timeout: float = 10.0,
                 times: ConnectionTimes | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self.times = times
        self.setup = 0.0
        self._loop = asyncio.get_running_loop()
        self._proto: _Protocol | None = None
        self._used = False
        self._host_line = b" HTTP/1.1\r\nHost: " + target.host_header + b"\r\n"
        # One timer per connection, not one per request: it is armed for the deadline of the
        # request in flight and, when it fires early for a later request, re-armed for that
        # one's deadline. Back-to-back requests so arm it about once per ``timeout``.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiter: asyncio.Future[Any] | None = None

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() >= self._deadline:
            waiter.set_result(_TIMEOUT)
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    async def _tcp(self) -> socket.socket:
        target = self.target
        if target.addresses is None:
            target.addresses = await self._loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"no address for {target.host!r}")
        for family, kind, proto, _, address in target.addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await self._loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise error

    async def _connect(self) -> _Protocol:
        proto = _Protocol()
        target = self.target
        phase = "connect"
        start = perf_counter()
        connected = start
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            async with asyncio.timeout(self.timeout):
                sock = await self._tcp()
                connected = perf_counter()
                if target.ssl is not None:
                    phase = "TLS handshake"
                try:
                    if target.ssl is None:
                        await self._loop.create_connection(lambda: proto, sock=sock)
                    else:
                        await self._loop.create_connection(
                            lambda: proto, sock=sock, ssl=target.ssl,
                            server_hostname=target.host, ssl_handshake_timeout=self.timeout)
                except BaseException:
                    sock.close()
                    raise
        except ConnectionRefusedError as exc:
            raise ClientError("connection_refused", str(exc)) from None
        except TimeoutError:
            raise ClientError("timeout", f"{phase} timed out after {self.timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            raise ClientError("tls", f"certificate verify failed for {target.host}: "
                                     f"{exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise ClientError("tls", f"{type(exc).__name__}: {exc.reason or exc}") from None
        except ConnectionResetError as exc:
            raise ClientError("connection_reset", f"during {phase}: {exc}") from None
        except OSError as exc:
            raise ClientError("connection_refused", f"{type(exc).__name__}: {exc}") from None
        done = perf_counter()
        self.setup += done - start
        times = self.times
        if times is not None:
            times.connect.record(connected - start)
            if target.ssl is not None:
                times.tls.record(done - connected)
        self._proto = proto
        self._used = False
        return proto

    def close(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        proto = self._proto
        self._proto = None
        if proto is not None and proto.transport is not None:
            if self.target.ssl is None:
                proto.transport.close()
            else:
                # no close_notify exchange: it would outlive the run's event loop, and HTTP
                # message lengths are known without it (RFC 9112 section 9.8)
                proto.transport.abort()

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
        self, payload: bytes, idempotent: bool = False
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bytes | None]:
        self.setup = 0.0
        may_resend = idempotent
        while True:
            proto = self._proto
            if proto is None or proto.closed:
                proto = await self._connect()
            reused = self._used
            proto.error = None
            proto.received = False
            proto.headers = []
            proto.body = []
            proto.server_timing = None
            proto.head = payload.startswith(b"HEAD ")
            loop = self._loop
            waiter = loop.create_future()
            proto.waiter = self._waiter = waiter
            self._deadline = loop.time() + self.timeout
            if self._timer is None:
                self._timer = loop.call_at(self._deadline, self._on_timer)
            assert proto.transport is not None
            proto.transport.write(payload)
            try:
                await waiter
            except asyncio.CancelledError:
                # the answer may still come: never read it as the next request's
                self.close()
                raise
            finally:
                proto.waiter = self._waiter = None
            self._used = True
            error = proto.error
            if waiter.result() is _TIMEOUT:
                self.close()
                raise ClientError("timeout", f"no response within {self.timeout:g}s")
            if error is not None:
                self.close()
                if may_resend and reused and not proto.received and error.kind == (
                    "connection_reset"
                ):
                    may_resend = False
                    continue
                raise error
            if not proto.keep_alive:
                self.close()
            body = proto.body
            return (
                proto.status,
                proto.headers,
                body[0] if len(body) == 1 else b"".join(body),
                proto.server_timing,
            )


_TIMEOUT = object()


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
            filename, data = spec
            ctype = "application/octet-stream"
        else:
            filename, data, ctype = spec
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
