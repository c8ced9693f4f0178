"""The transport: the standard library's ``multiprocessing.connection`` over TCP.

``Listener``/``Client`` with an ``authkey`` authenticate both ends with an HMAC challenge
before any message is exchanged; messages are length-prefixed byte strings (``send_bytes``),
here JSON (never pickle, so an authenticated peer still cannot run code in the other
process). Two additions make every wait bounded:

* socket-level timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``) on the listening socket, which the
  accepted sockets inherit: a connection that stalls in the authentication handshake, or a
  peer that stops reading, fails after ``io`` seconds instead of blocking the accept loop or
  the sender;
* :func:`connect` gives up after ``timeout`` seconds (``Client`` itself has no timeout).

Only IPv4 addresses: ``multiprocessing.connection`` treats every ``(host, port)`` as AF_INET.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener

from pytest_minigram.coordination.errors import CoordinationTimeout, CoordinatorGone, Refused

__all__ = [
    "MAX_MESSAGE",
    "Address",
    "connect",
    "format_address",
    "listen",
    "new_secret",
    "parse_address",
    "set_io_timeout",
]

Address = tuple[str, int]
MAX_MESSAGE = 256 * 1024 * 1024  # a merged result of a long run is a few MB; this is a guard


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def parse_address(address: str | Address) -> Address:
    """``"10.0.0.1:4000"`` or ``("10.0.0.1", 4000)`` -> ``("10.0.0.1", 4000)``."""
    if isinstance(address, tuple):
        return (str(address[0]), int(address[1]))
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    return (host, int(port))


def format_address(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def _set_timeouts(sock: socket.socket, seconds: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(seconds))


def set_io_timeout(conn: Connection, seconds: float) -> None:
    """Reads and writes on ``conn`` that make no progress for ``seconds`` fail (OSError)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))  # the same socket, another descriptor
    try:
        _set_timeouts(sock, seconds)
    finally:
        sock.close()


def listen(host: str, port: int, secret: bytes, io_timeout: float,
           backlog: int = 256) -> Listener:
    listener = Listener((host, port), family="AF_INET", backlog=backlog, authkey=secret)
    # Listener has no public handle on its socket; without it, only the handshake timeout is
    # lost (accepted connections get theirs in the accept loop).
    raw = getattr(getattr(listener, "_listener", None), "_socket", None)
    if isinstance(raw, socket.socket):
        _set_timeouts(raw, io_timeout)
    return listener


def connect(address: Address, secret: bytes, timeout: float, io_timeout: float) -> Connection:
    """An authenticated connection to ``address`` within ``timeout`` seconds."""
    done = threading.Event()
    lock = threading.Lock()
    box: dict[str, object] = {}

    def attempt() -> None:
        try:
            conn = Client(address, family="AF_INET", authkey=secret)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        else:
            with lock:
                if box.get("abandoned"):
                    conn.close()
                    return
                box["conn"] = conn
        finally:
            done.set()

    thread = threading.Thread(target=attempt, name="minigram-connect", daemon=True)
    thread.start()
    done.wait(timeout)
    with lock:
        conn = box.get("conn")
        if not isinstance(conn, Connection):
            box["abandoned"] = True
    where = format_address(address)
    error = box.get("error")
    if isinstance(error, AuthenticationError):
        raise Refused(f"the coordinator at {where} refused this worker's secret ({error})")
    if isinstance(error, BaseException):
        raise CoordinatorGone(f"could not connect to the coordinator at {where}: "
                              f"{type(error).__name__}: {error}")
    if not isinstance(conn, Connection):
        raise CoordinationTimeout(f"timeout after {timeout:g}s connecting to the coordinator "
                                  f"at {where} (no answer to the authentication handshake)")
    set_io_timeout(conn, io_timeout)
    return conn

