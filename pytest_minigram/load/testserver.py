"""A tiny HTTP/1.1 server with known behaviour, to check the engine's own accuracy.

Run ``python -m pytest_minigram.load.testserver [--port N]``; it prints ``PORT <n>`` when ready.
With ``--certfile`` and ``--keyfile`` it speaks TLS (``--handshake-delay-ms`` stalls every
handshake, to tell handshake time from request time). Every path answers ``{"ok": true}``;
query parameters change that:

- ``delay_ms=20``: answer after 20 ms (asyncio sleep, other connections keep going)
- ``status=503``: answer with that status
- ``timing=1``: add ``Server-Timing: db;dur=1.5, app;dur=2.5``
- ``close=1``: answer with ``Connection: close`` and close
- ``body=text``: answer that text (percent-decoded, sent as latin-1) instead
- ``/reset``: reset the connection (RST) instead of answering
- ``/garbage``: answer bytes that are not HTTP
- ``/freeze?ms=1000``: block the whole server for that long (like a GC pause or a stall)
- ``/echo``: answer the request as JSON (method, path, headers, body as latin-1, and the
  number of the connection it came on)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import struct
import subprocess
import sys
import time
from types import TracebackType
from urllib.parse import parse_qsl, urlsplit

import httptools

__all__ = ["ServerProcess", "main"]

_REASONS = {200: b"OK", 201: b"Created", 204: b"No Content", 404: b"Not Found",
            409: b"Conflict", 500: b"Internal Server Error", 503: b"Service Unavailable"}


_connections = 0


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        global _connections
        _connections += 1
        self.number = _connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        url, headers, body = self.url, self.headers, b"".join(self.body)
        asyncio.get_running_loop().create_task(self.respond(method, url, headers, body))

    async def respond(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        parts = urlsplit(url.decode("latin-1"))
        query = dict(parse_qsl(parts.query))
        if parts.path == "/reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return
        if parts.path == "/garbage":
            transport.write(b"SPAM SPAM SPAM\r\n\r\n")
            return
        if parts.path == "/freeze":
            time.sleep(float(query.get("ms", "1000")) / 1000)
        if "delay_ms" in query:
            await asyncio.sleep(float(query["delay_ms"]) / 1000)
        status = int(query.get("status", "200"))
        if parts.path == "/echo":
            payload = json.dumps({
                "method": method.decode(), "path": url.decode("latin-1"),
                "headers": {k.decode("latin-1").lower(): v.decode("latin-1")
                            for k, v in headers},
                "body": body.decode("latin-1"), "connection": self.number,
            }).encode()
        elif "body" in query:
            payload = query["body"].encode("latin-1", "replace")
        else:
            payload = b'{"ok":true}'
        extra = b""
        if query.get("timing"):
            extra += b"Server-Timing: db;dur=1.5, app;dur=2.5\r\n"
        close = bool(query.get("close"))
        if transport.is_closing():
            return
        if close:
            extra += b"Connection: close\r\n"
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status, _REASONS.get(status, b"Status"), len(payload), extra, payload)
        )
        if close:
            transport.close()


def server_tls_context(certfile: str, keyfile: str | None = None,
                       handshake_delay: float = 0.0) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    if handshake_delay > 0:
        # called during every handshake (also without SNI); blocking on purpose
        def stall(*_: object) -> None:
            time.sleep(handshake_delay)

        ctx.sni_callback = stall
    return ctx


async def serve(host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Conn, host, port, backlog=4096, ssl=tls)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Test HTTP server with known behaviour")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--certfile", help="PEM certificate chain: serve TLS")
    parser.add_argument("--keyfile", help="PEM private key (if not in --certfile)")
    parser.add_argument("--handshake-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    tls = None if args.certfile is None else server_tls_context(
        args.certfile, args.keyfile, args.handshake_delay_ms / 1000)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, tls))
    except ImportError:
        asyncio.run(serve(args.host, args.port, tls))
    except KeyboardInterrupt:
        pass
    return 0


class ServerProcess:
    """Start the test server in a subprocess; ``url`` once started; always stopped on exit.

    With ``certfile`` (and ``keyfile``) it serves ``https://``.
    """

    def __init__(self, certfile: str | None = None, keyfile: str | None = None,
                 handshake_delay_ms: float = 0.0) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.pid = 0
        self.args = ["--port", "0"]
        if certfile is not None:
            self.args += ["--certfile", certfile]
            if keyfile is not None:
                self.args += ["--keyfile", keyfile]
            self.args += ["--handshake-delay-ms", str(handshake_delay_ms)]
        self.scheme = "http" if certfile is None else "https"

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_minigram.load.testserver", *self.args],
            stdout=subprocess.PIPE, text=True,
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"test server did not start: {line!r}")
        self.url = f"{self.scheme}://127.0.0.1:{int(line.split()[1])}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
