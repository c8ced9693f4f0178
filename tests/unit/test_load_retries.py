"""Resending after a lost keep-alive connection: idempotent requests only.

The server here is a few lines of asyncio in the test's own event loop: it answers the first
request of every connection, and resets the connection (SO_LINGER 0, then close) after
reading the second one in full, so that the second request of a journey always travels on a
reused connection that dies before any byte of the answer.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import httptools
import pytest

from pytest_minigram.load import Closed, Journey, Result, VirtualUser, run_async


class _ResetSecond(asyncio.Protocol):
    def __init__(self, seen: list[tuple[str, str, bytes]]) -> None:
        self.seen = seen
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.requests = 0
        self.url = b""
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url, self.body = b"", b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.requests += 1
        method = self.parser.get_method().decode()
        self.seen.append((method, self.url.decode(), self.body))
        if self.requests == 2:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            return
        body = b"" if method == "HEAD" else b"ok"
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)


def _play(second: Callable[[VirtualUser], Awaitable[object]]
          ) -> tuple[Result, list[tuple[str, str, bytes]]]:
    seen: list[tuple[str, str, bytes]] = []

    async def journey(user: VirtualUser) -> None:
        await user.get("/first", name="first")
        await second(user)

    async def main() -> Result:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _ResetSecond(seen), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await run_async(Closed(users=1, duration=10.0, iterations=1),
                                   Journey("retry", journey), f"http://127.0.0.1:{port}",
                                   timeout=2.0)
        finally:
            server.close()

    return asyncio.run(main()), seen


def test_a_post_reset_after_it_was_read_is_an_error_and_never_resent() -> None:
    result, seen = _play(lambda user: user.post("/order", json={"n": 1}, name="order"))
    assert seen.count(("POST", "/order", b'{"n":1}')) == 1, seen
    assert set(result.errors) == {"connection_reset"}
    assert result.errors["connection_reset"]["count"] == 1
    assert result.actions["order"].count == 1 and result.actions["order"].errors == 1
    assert result.actions["first"].errors == 0


@pytest.mark.parametrize("method", ["PATCH"])
def test_other_non_idempotent_methods_are_not_resent(method: str) -> None:
    result, seen = _play(lambda user: user.request(method, "/thing", json={}, name="thing"))
    assert [s[:2] for s in seen].count((method, "/thing")) == 1
    assert result.actions["thing"].errors == 1
    assert set(result.errors) == {"connection_reset"}


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_an_idempotent_request_on_a_stale_connection_is_retried_once(method: str) -> None:
    result, seen = _play(lambda user: user.request(method, "/again", name="again"))
    # once on the reused connection (reset), once on a fresh one (answered)
    assert [s[:2] for s in seen] == [("GET", "/first"), (method, "/again"), (method, "/again")]
    assert result.errors == {}
    assert result.actions["again"].count == 1 and result.actions["again"].errors == 0
    assert result.iterations == 1
