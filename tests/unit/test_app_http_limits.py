"""Request heads and idle connections on a real ``minigram serve``, on every stage.

A head over the limit is a JSON 431 whether it arrives whole or never ends, and an endless
one does not grow the server's memory; a connection that sends nothing, half a head, or a
head one byte at a time, and an idle keep-alive connection, are all closed after their
timeout (the server's own sockets are counted with psutil, and the client sees the close).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.app_server import AppServer, serve_stage_fixture  # noqa: F401 - a fixture

STAGES = ("1", "1.5", "2")


@pytest.fixture(params=STAGES)
def stage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _connect(server: AppServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sent until it closed the connection (True), or until ``timeout``."""
    deadline = time.monotonic() + timeout
    data = b""
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _json_error(raw: bytes) -> dict[str, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    parsed = json.loads(body)
    assert set(parsed) == {"error", "detail"}, parsed
    return dict(parsed)


def _established(server: AppServer) -> int:
    return sum(server.connections(proc) for proc in server.tree())


def _stream(sock: socket.socket, chunk: bytes, limit: int, seconds: float) -> int:
    """Send ``chunk`` until the server answers or closes, ``limit`` bytes went out, or
    ``seconds`` passed; the bytes sent."""
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while sent < limit and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_a_head_over_the_limit_is_a_json_431(
    stage: str, serve_stage: Callable[..., AppServer]
) -> None:
    server = serve_stage(stage, max_header_bytes=16 * 1024)
    with _connect(server) as sock:  # under the limit: served
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8000 + b"\r\n\r\n")
        raw, _ = _until_closed(sock, 0.5)
        assert _status(raw) == 200, raw[:300]
    for padding in (20_000, 8 * 1024 * 1024):  # over it: whole, and 8 MB
        with _connect(server) as sock:
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
            sock.sendall(head)
            sent = _stream(sock, b"a" * 4096, padding, 10)
            if sent >= padding:
                try:
                    sock.sendall(b"\r\n\r\n")
                except OSError:  # closed on us already
                    pass
            raw, closed = _until_closed(sock, 5)
        assert _status(raw) == 431 and closed, (padding, raw[:300])
        assert _json_error(raw)["error"] == "headers_too_large"
    with _connect(server) as sock:  # not HTTP at all: a JSON 400 too
        sock.sendall(b"NOT HTTP\r\n\r\n")
        raw, closed = _until_closed(sock, 5)
    assert _status(raw) == 400 and closed and _json_error(raw)["error"] == "bad_request"


def test_an_endless_header_does_not_grow_the_server(
    stage: str, serve_stage: Callable[..., AppServer]
) -> None:
    server = serve_stage(stage)
    with _connect(server) as warm:  # the first request allocates what every request needs
        warm.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _until_closed(warm, 5)
    before = server.rss()
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = _stream(sock, b"a" * 65536, 100 * 1024 * 1024, 20)
        grown = server.rss() - before  # with the connection still open on our side
        raw, closed = _until_closed(sock, 5)
    assert grown < 16 * 1024 * 1024, f"the server grew {grown / 2**20:.0f} MiB"
    assert sent < 16 * 1024 * 1024, f"{sent} bytes of one header went out before the close"
    assert closed, f"the server still reads after {sent} bytes"
    if raw:
        assert _status(raw) == 431


def test_idle_and_half_sent_connections_are_closed(
    stage: str, serve_stage: Callable[..., AppServer]
) -> None:
    timeout = 1.0
    server = serve_stage(stage, header_timeout=timeout, keepalive_timeout=timeout)
    idle, half, kept, trickle = (_connect(server) for _ in range(4))
    try:
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        stop = threading.Event()

        def dribble() -> None:  # a byte of header every 0.2 s, never the end
            try:
                trickle.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                while not stop.wait(0.2):
                    trickle.sendall(b"a")
            except OSError:
                pass

        thread = threading.Thread(target=dribble, daemon=True)
        thread.start()
        time.sleep(0.3)
        assert _established(server) >= 4
        started = time.monotonic()
        answers = {name: _until_closed(sock, timeout * 4)
                   for name, sock in (("idle", idle), ("half", half), ("kept", kept),
                                      ("trickle", trickle))}
        waited = time.monotonic() - started
        stop.set()
        thread.join(timeout=5)
    finally:
        for sock in (idle, half, kept, trickle):
            sock.close()
    assert all(closed for _, closed in answers.values()), answers
    assert waited < timeout * 4, waited
    assert answers["idle"][0] == b""
    for name in ("half", "trickle"):
        raw = answers[name][0]
        assert _status(raw) == 408 and _json_error(raw)["error"] == "request_timeout", raw
    assert _status(answers["kept"][0]) == 200  # answered, then closed when idle
    deadline = time.monotonic() + 3
    while _established(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _established(server) == 0


def test_the_h11_parser_has_the_same_guards(serve_stage: Callable[..., AppServer]) -> None:
    """``MINIGRAM_HTTP=h11`` (or ``serve --http h11``) swaps the parser, not the defences."""
    server = serve_stage("1.5", http="h11", header_timeout=1.0, keepalive_timeout=1.0,
                         max_header_bytes=16 * 1024)
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8000 + b"\r\n\r\n")
        assert _status(_until_closed(sock, 0.5)[0]) == 200
    before = server.rss()
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = _stream(sock, b"a" * 65536, 100 * 1024 * 1024, 20)
        grown = server.rss() - before
        raw, closed = _until_closed(sock, 5)
    assert grown < 16 * 1024 * 1024 and sent < 16 * 1024 * 1024 and closed, (grown, sent)
    if raw:
        assert _status(raw) == 431 and _json_error(raw)["error"] == "headers_too_large"
    with _connect(server) as idle, _connect(server) as half:
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert _until_closed(idle, 4) == (b"", True)
        raw, closed = _until_closed(half, 4)
    assert closed and _status(raw) == 408 and _json_error(raw)["error"] == "request_timeout"
