"""Hostile input against Minigram, on stages 1 and 2 (SQLite and PostgreSQL + Redis).

Injection, traversal, disguised uploads, decompression bombs, huge and slow bodies, other
people's resources, revoked tokens, login timing and login rate limits, security headers.
Tests that need the raw wire (unnormalised paths, trickled or endless bodies) talk to a real
uvicorn in a thread over a socket on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import statistics
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from PIL import Image

from minigram.app import create_app
from minigram.login_limits import LoginLimiter, WindowCounts
from minigram.security import HEADERS

PASSWORD = "password123"
SQL_INJECTIONS = [
    "' OR '1'='1",
    "admin'--",
    "x'; DROP TABLE users; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5)--",
    "') UNION SELECT id, password_hash FROM users--",
    "%' OR 1=1 --",
    "\\'; DELETE FROM photos WHERE '1'='1",
]


@pytest.fixture(params=["1", "2"])
def stage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(
    stage: str, app_settings_factory: Callable[..., Any], test_client_factory: Callable[..., Any]
) -> Callable[..., Any]:
    """``make(**settings_overrides) -> TestClient`` on this test's stage."""

    def make(**overrides: Any) -> Any:
        return test_client_factory(create_app(app_settings_factory(stage, **overrides)))

    return make


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()


@pytest.fixture
def sapi(client: Any, api_factory: Callable[[Any], Any]) -> Any:
    return api_factory(client)


@pytest.fixture
def make_server(
    stage: str,
    app_settings_factory: Callable[..., Any],
    thread_server_factory: Callable[[Any], Any],
) -> Callable[..., Any]:
    """``make(**settings_overrides) -> ThreadServer`` (uvicorn on 127.0.0.1)."""

    def make(**overrides: Any) -> Any:
        return thread_server_factory(create_app(app_settings_factory(stage, **overrides)))

    return make


def sapi_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    return buffer.getvalue()


def _counts(client: Any, username: str) -> dict[str, Any]:
    response = client.get(f"/api/users/{username}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _assert_error(response: Any, status: int | tuple[int, ...]) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str)
    return dict(body)


# --- SQL injection ----------------------------------------------------------------------


def test_sql_injection_in_every_string_field_is_inert(client: Any, sapi: Any) -> None:
    alice = sapi.user("alice")
    photo = sapi.photo(alice, caption="first")
    for attack in SQL_INJECTIONS:
        # username: refused by its pattern (register) or simply unknown (login)
        _assert_error(
            client.post("/api/register", json={"username": attack, "password": PASSWORD}), 422
        )
        _assert_error(
            client.post("/api/login", json={"username": attack, "password": PASSWORD}), 401
        )
        # password: never matches someone else's, and is stored as the literal text it is
        _assert_error(
            client.post("/api/login", json={"username": "alice", "password": attack}), 401
        )
        # path parameters: a name that is not a username, an id that is not an integer
        quoted = attack.replace("%", "%25").replace("/", "%2F").replace("?", "%3F")
        quoted = quoted.replace("#", "%23").replace("\\", "%5C")
        _assert_error(client.get(f"/api/users/{quoted}"), 404)
        _assert_error(client.post(f"/api/users/{quoted}/follow", headers=alice.headers), 404)
        _assert_error(client.get(f"/api/photos/{photo['id']} {quoted}"), 404)
        _assert_error(client.delete(f"/api/photos/{quoted}", headers=alice.headers), 404)
        # cursor: not one we made
        _assert_error(
            client.get("/api/feed", params={"cursor": attack}, headers=alice.headers), 422
        )
    # A password that looks like SQL is just a password.
    tricky = "' OR '1'='1' -- pw"
    bob = sapi.user("bob", password=tricky)
    _assert_error(client.post("/api/login", json={"username": "bob", "password": "' OR 1=1"}), 401)
    # Captions are stored and returned verbatim, and still nothing was dropped or leaked.
    for attack in SQL_INJECTIONS:
        stored = sapi.photo(bob, caption=attack)
        assert client.get(f"/api/photos/{stored['id']}").json()["caption"] == attack
    assert _counts(client, "alice") == {
        "id": alice.id, "username": "alice", "followers": 0, "following": 0, "photos": 1
    }
    assert _counts(client, "bob")["photos"] == len(SQL_INJECTIONS)
    assert client.get(f"/api/photos/{photo['id']}").json()["caption"] == "first"


def test_a_forged_cursor_with_a_huge_id_is_refused_not_a_500(client: Any, sapi: Any) -> None:
    import base64

    alice = sapi.user()
    for text in ("2024-01-01T00:00:00|4294967296", "2024-01-01T00:00:00|1 OR 1=1",
                 "0001-01-01T00:00:00|-1", "9999-12-31T23:59:59|0"):
        cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        _assert_error(client.get("/api/feed", params={"cursor": cursor}, headers=alice.headers),
                      422)
    for query in ("limt=5", "limit=", "limit=%D9%A5", "limit=+5", "limit=0_5", "limit=1&limit=2",
                  "cursor=a&cursor=b"):
        _assert_error(client.get(f"/api/feed?{query}", headers=alice.headers), 422)


# --- path traversal ---------------------------------------------------------------------


TRAVERSALS = [
    "/media/../minigram.db",
    "/media/../../etc/passwd",
    "/media/..%2fminigram.db",
    "/media/..%2Fminigram.db",
    "/media/%2e%2e%2fminigram.db",
    "/media/%2e%2e/minigram.db",
    "/media/..%252fminigram.db",
    "/media/..%5cminigram.db",
    "/media/..\\minigram.db",
    "/media/....//minigram.db",
    "/media/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/media/minigram.db%00.png",
    "/media/%c0%ae%c0%ae%2fminigram.db",
    "/media/.%2e/minigram.db",
    "/media//etc/passwd",
    "/media/%2fetc%2fpasswd",
]


def test_path_traversal_in_media_names_never_leaves_the_media_directory(
    make_server: Callable[..., Any], api_factory: Callable[[Any], Any]
) -> None:
    server = make_server()
    host, port = "127.0.0.1", server.port
    # A real photo, so we know media serving works at all.
    import requests

    session = requests.Session()
    session.post(f"{server.url}/api/register", json={"username": "alice", "password": PASSWORD})
    token = session.post(
        f"{server.url}/api/login", json={"username": "alice", "password": PASSWORD}
    ).json()["token"]
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(buffer, "PNG")
    url = session.post(
        f"{server.url}/api/photos",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("a.png", buffer.getvalue(), "image/png")},
    ).json()["url"]
    for path in [*TRAVERSALS, url.replace("/media/", "/media/../media/")]:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.putrequest("GET", path, skip_accept_encoding=True)  # sent as is, not normalised
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status in (400, 404), (path, response.status, body[:200])
        assert b"SQLite format" not in body and b"root:" not in body, path
        if response.status == 404:
            assert response.getheader("content-type", "").startswith("application/json"), path
    served = session.get(f"{server.url}{url}")
    assert served.status_code == 200 and served.content == buffer.getvalue()


# --- uploads: disguised content, bombs ---------------------------------------------------


def test_upload_content_decides_the_type_not_the_declared_one(client: Any, sapi: Any) -> None:
    alice = sapi.user()
    html = b"<html><script>alert(document.cookie)</script></html>"
    _assert_error(sapi.upload(alice, data=html, filename="x.png", content_type="image/png"), 415)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    _assert_error(sapi.upload(alice, data=svg, filename="x.svg", content_type="image/svg+xml"),
                  415)
    # PNG magic bytes with HTML behind them: a polyglot, not a PNG
    _assert_error(
        sapi.upload(alice, data=b"\x89PNG\r\n\x1a\n" + html, content_type="image/png"), 422
    )
    # a form field the endpoint does not know is a mistake, not something to ignore
    response = client.post("/api/photos", headers=alice.headers,
                           files={"file": ("a.png", sapi_png(), "image/png")},
                           data={"caption": "x", "owner_id": "1"})
    assert _assert_error(response, 422)["detail"] == {
        "owner_id": "unknown form field; send file and caption"
    }
    response = client.post("/api/photos", headers=alice.headers,
                           files=[("file", ("a.png", sapi_png(), "image/png"))],
                           data={"caption": ["one", "two"]})
    assert _assert_error(response, 422)["detail"] == {"caption": "must be sent at most once"}
    # a real JPEG declared as PNG (and named .gif) is stored and served as the JPEG it is
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(buffer, "JPEG")
    response = sapi.upload(alice, data=buffer.getvalue(), filename="x.gif",
                           content_type="image/png")
    assert response.status_code == 201, response.text
    photo = response.json()
    assert photo["content_type"] == "image/jpeg" and photo["url"].endswith(".jpg")
    served = client.get(photo["url"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.content == buffer.getvalue()
    assert _counts(client, alice.username)["photos"] == 1


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header is patched to claim ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bombs_are_refused(client: Any, sapi: Any) -> None:
    alice = sapi.user()
    # a real bomb: 8000 x 8000 = 64 M pixels of one colour, a few KB compressed
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, "PNG", optimize=True)
    bomb = buffer.getvalue()
    assert len(bomb) < 200_000
    for data in (bomb, _png_claiming(100_000, 100_000), _png_claiming(2**31 - 1, 2**31 - 1)):
        started = time.monotonic()
        body = _assert_error(sapi.upload(alice, data=data), (413, 415, 422))
        assert time.monotonic() - started < 5
        assert body["error"] in ("image_too_large", "invalid_image"), body
    assert _counts(client, alice.username)["photos"] == 0


# --- huge and slow bodies ------------------------------------------------------------------


def _read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _stream_until_answered(sock: socket.socket, frame: bytes, limit: int) -> tuple[int, bytes]:
    """Send chunked ``frame``s until the server answers (or ``limit`` body bytes went out);
    (body bytes sent, the answer's head)."""
    sent = 0
    try:
        while sent < limit:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(frame)
            sent += len(frame) - frame.index(b"\r\n") - 4
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent, _read_response(sock, 10)


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def test_a_100_mb_body_is_refused_early_with_memory_bounded(
    make_server: Callable[..., Any],
) -> None:
    server = make_server()
    hundred_mb = 100 * 1024 * 1024
    # 1. Content-Length says 100 MB: 413 before a byte of the body is sent.
    for path in ("/api/photos", "/api/login", "/api/register", "/healthz"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {hundred_mb}\r\n\r\n".encode()
            )
            raw = _read_response(sock, 5)
            assert _status(raw) == 413, (path, raw[:300])
            assert raw.endswith(b"}") or b"payload_too_large" in raw
    # 2. Chunked, no length: the server stops reading soon after its limit.
    process = psutil.Process()
    rss_before = process.memory_info().rss
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    for path, kind in (("/api/photos", "multipart/form-data; boundary=b"),
                       ("/api/login", "application/json"),
                       ("/api/register", "application/json")):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                f"Content-Type: {kind}\r\nAuthorization: Bearer nope\r\n\r\n".encode()
            )
            sent, answer = _stream_until_answered(sock, frame, hundred_mb)
        assert _status(answer) in (401, 413), (path, answer[:300])
        assert sent < 20 * 1024 * 1024, f"{path}: sent {sent} bytes before the answer"
    # Authenticated, so the upload really streams until the limit.
    import requests

    requests.post(f"{server.url}/api/register", json={"username": "al", "password": PASSWORD})
    requests.post(f"{server.url}/api/register", json={"username": "alice", "password": PASSWORD})
    token = requests.post(
        f"{server.url}/api/login", json={"username": "alice", "password": PASSWORD}
    ).json()["token"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            "POST /api/photos HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        sock.sendall(
            f"{40:x}\r\n".encode()
            + b'--b\r\nContent-Disposition: form-data; name="file"; fi'.ljust(64, b"x")[:64]
            + b"\r\n"
        )
        sent, answer = _stream_until_answered(sock, frame, hundred_mb)
    assert _status(answer) in (400, 413), answer[:300]
    assert sent < 20 * 1024 * 1024
    assert process.memory_info().rss - rss_before < 64 * 1024 * 1024


def test_a_slow_body_times_out_and_does_not_exhaust_the_server(
    make_server: Callable[..., Any],
) -> None:
    timeout = 1.0
    server = make_server(body_timeout=timeout, max_concurrency=4, max_queue=0)
    slow: list[socket.socket] = []
    answers: list[bytes] = [b""] * 6
    try:
        for _ in range(6):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(
                b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            slow.append(sock)
        started = time.monotonic()

        def trickle(i: int, sock: socket.socket) -> None:
            try:
                while time.monotonic() - started < timeout * 4:
                    readable, _, _ = select.select([sock], [], [], 0.2)
                    if readable:
                        break
                    sock.sendall(b" ")
                answers[i] = _read_response(sock, 5)
            except OSError:
                pass

        threads = [threading.Thread(target=trickle, args=(i, s)) for i, s in enumerate(slow)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=timeout * 6)
        elapsed = time.monotonic() - started
    finally:
        for sock in slow:
            sock.close()
    statuses = sorted(_status(a) for a in answers if a)
    assert len(statuses) == 6, answers
    # those that got a slot timed out (408); the rest were shed at once (503), none hung
    assert 408 in statuses and set(statuses) <= {408, 503}, statuses
    assert elapsed < timeout * 4, elapsed
    import requests

    for _ in range(8):  # every slot is free again
        response = requests.post(
            f"{server.url}/api/register", json={"username": "u" * 3, "password": PASSWORD}
        )
        assert response.status_code in (201, 409), response.text
    assert requests.get(f"{server.url}/api/users/uuu", timeout=5).status_code == 200


# --- other people's resources -----------------------------------------------------------


def test_no_insecure_direct_object_references(client: Any, sapi: Any) -> None:
    alice, mallory, carol = sapi.user("alice"), sapi.user("mallory"), sapi.user("carol")
    photo = sapi.photo(alice, caption="mine")
    pid = photo["id"]
    assert client.post(f"/api/photos/{pid}/like", headers=alice.headers).json()["likes"] == 1
    sapi.follow(alice, carol)
    # delete another's photo: 403, and it is still there with its file
    _assert_error(client.delete(f"/api/photos/{pid}", headers=mallory.headers), 403)
    assert client.get(f"/api/photos/{pid}").status_code == 200
    assert client.get(photo["url"]).status_code == 200
    # unlike: removes only the caller's own like, never alice's
    response = client.delete(f"/api/photos/{pid}/like", headers=mallory.headers)
    assert response.status_code == 200 and response.json()["likes"] == 1
    assert client.get(f"/api/photos/{pid}", headers=alice.headers).json()["liked"] is True
    # unfollow: mallory cannot end alice's follow of carol
    response = client.delete("/api/users/carol/follow", headers=mallory.headers)
    assert response.status_code == 200
    assert _counts(client, "carol")["followers"] == 1
    assert _counts(client, "alice")["following"] == 1
    # feed: mallory follows nobody and sees nothing of alice's
    assert client.get("/api/feed", headers=mallory.headers).json()["photos"] == []
    # logout: mallory's logout revokes mallory's token only
    assert client.post("/api/logout", headers=mallory.headers).status_code == 200
    assert client.get("/api/feed", headers=alice.headers).status_code == 200
    # the owner still can
    assert client.delete(f"/api/photos/{pid}", headers=alice.headers).status_code == 200
    _assert_error(client.get(photo["url"]), 404)
    _assert_error(client.delete(f"/api/photos/{pid}", headers=alice.headers), 404)


def test_a_token_is_dead_after_logout(client: Any, sapi: Any) -> None:
    alice = sapi.user("alice")
    bob = sapi.user("bob")
    pid = sapi.photo(bob)["id"]
    assert client.get("/api/feed", headers=alice.headers).status_code == 200  # cached on 2
    assert client.post("/api/logout", headers=alice.headers).status_code == 200
    calls = [
        ("GET", "/api/feed"),
        ("POST", "/api/logout"),
        ("POST", f"/api/photos/{pid}/like"),
        ("DELETE", f"/api/photos/{pid}/like"),
        ("POST", "/api/users/bob/follow"),
        ("DELETE", "/api/users/bob/follow"),
        ("GET", f"/api/photos/{pid}"),
    ]
    for method, path in calls:
        body = _assert_error(client.request(method, path, headers=alice.headers), 401)
        assert body["error"] == "invalid_token", (method, path)
    _assert_error(sapi.upload(alice), 401)
    assert client.get(f"/api/photos/{pid}").json()["likes"] == 0
    # logging in again gives a new, working token
    again = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert again.json()["token"] != alice.token
    headers = {"Authorization": f"Bearer {again.json()['token']}"}
    assert client.get("/api/feed", headers=headers).status_code == 200


# --- login: timing and rate limits ------------------------------------------------------


def test_login_time_does_not_tell_whether_a_username_exists(
    make_client: Callable[..., Any], api_factory: Callable[[Any], Any]
) -> None:
    client = make_client(bcrypt_rounds=8, login_user_limit=0, login_ip_limit=0)
    api_factory(client).user("alice")

    names = ("alice", "nobody_here", "not a valid name!")

    def once(username: str) -> float:
        started = time.perf_counter()
        response = client.post(
            "/api/login", json={"username": username, "password": "wrong-password"}
        )
        assert response.status_code == 401
        return time.perf_counter() - started

    for name in names:  # warm up every path
        once(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(11):  # interleaved, so a busy machine slows all three alike
        for name in names:
            times[name].append(once(name))
    known, unknown, invalid = (statistics.median(times[name]) for name in names)
    # bcrypt at cost 8 takes ~15 ms here, the rest of a login ~1-3 ms: skipping the hash
    # for unknown names would make them several times faster.
    assert 0.6 < unknown / known < 1.6, (known, unknown)
    assert 0.6 < invalid / known < 1.6, (known, invalid)


def test_login_failures_are_rate_limited_per_username(make_client: Callable[..., Any],
                                                      api_factory: Callable[[Any], Any]) -> None:
    client = make_client(login_user_limit=3, login_ip_limit=0, login_window=30)
    api = api_factory(client)
    api.user("alice")
    api.user("bob")
    for _ in range(3):
        bad = client.post("/api/login", json={"username": "alice", "password": "wrong-pass"})
        _assert_error(bad, 401)
    for password in ("wrong-pass", PASSWORD):  # locked, even with the right password
        response = client.post("/api/login", json={"username": "ALICE".lower(),
                                                   "password": password})
        body = _assert_error(response, 429)
        assert body["error"] == "too_many_attempts"
        assert 1 <= int(response.headers["retry-after"]) <= 30
    # another username is unaffected, and a success resets its own count
    for _ in range(2):
        _assert_error(client.post("/api/login", json={"username": "bob", "password": "nope-nope"}),
                      401)
    assert client.post("/api/login", json={"username": "bob", "password": PASSWORD}).status_code \
        == 200
    for _ in range(2):
        _assert_error(client.post("/api/login", json={"username": "bob", "password": "nope-nope"}),
                      401)
    assert client.post("/api/login", json={"username": "bob", "password": PASSWORD}).status_code \
        == 200


def test_login_failures_are_rate_limited_per_address(make_client: Callable[..., Any],
                                                     api_factory: Callable[[Any], Any]) -> None:
    client = make_client(login_user_limit=0, login_ip_limit=5, login_ip_exempt=())
    api_factory(client).user("alice")
    for i in range(5):
        _assert_error(
            client.post("/api/login", json={"username": f"guess_{i}", "password": "x" * 8}), 401
        )
    response = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    _assert_error(response, 429)
    assert int(response.headers["retry-after"]) >= 1


def test_loopback_is_exempt_from_the_address_limit_by_default(
    make_server: Callable[..., Any],
) -> None:
    """Load tests log many users in from 127.0.0.1: the default must not refuse them."""
    import requests

    server = make_server(login_ip_limit=5)
    session = requests.Session()
    session.post(f"{server.url}/api/register", json={"username": "alice", "password": PASSWORD})
    for i in range(20):
        response = session.post(
            f"{server.url}/api/login", json={"username": f"guess_{i}", "password": "x" * 8}
        )
        assert response.status_code == 401, response.text
    for _ in range(20):  # successes never count, for any limit
        response = session.post(
            f"{server.url}/api/login", json={"username": "alice", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text


def test_window_counts_free_up_as_time_passes() -> None:
    import asyncio

    now = [0.0]
    window = WindowCounts(window=10, max_keys=3, clock=lambda: now[0])
    assert window.reserve([("a", 2)], "m1") is None
    now[0] = 4
    assert window.reserve([("a", 2)], "m2") is None
    assert window.reserve([("a", 2)], "m3") == pytest.approx(6)
    now[0] = 10.5
    assert window.reserve([("a", 2)], "m4") is None  # the first attempt left the window
    window.release(["a"], "m4")  # handed back
    assert window.reserve([("a", 2)], "m5") is None
    for key in ("b", "c", "d"):
        window.reserve([(key, 1)], "x")
    assert len(window) == 3 and "a" not in window._events  # oldest evicted
    # a failure counts for that account from that address only
    limiter = LoginLimiter(pair_limit=1, ip_limit=0, window=5, clock=lambda: now[0])
    asyncio.run(limiter.reserve("Eve", "10.0.0.1"))
    with pytest.raises(Exception) as info:
        asyncio.run(limiter.reserve("eve", "10.0.0.1"))
    assert getattr(info.value, "status", None) == 429
    asyncio.run(limiter.reserve("eve", "10.0.0.2"))


# --- headers ------------------------------------------------------------------------------


def test_security_headers_on_every_kind_of_response(client: Any, sapi: Any) -> None:
    alice = sapi.user()
    photo = sapi.photo(alice)
    responses = [
        client.get("/healthz"),
        client.get("/openapi.json"),
        client.get("/metrics"),
        client.get("/api/feed", headers=alice.headers),
        client.get(photo["url"]),
        client.get("/api/feed"),  # 401
        client.get("/nope"),  # 404 from the router
        client.put("/api/feed"),  # 405
        client.post("/api/login", content=b"{", headers={"content-type": "application/json"}),
        client.post("/api/login", content=b"x" * 100, headers={"content-type": "text/plain"}),
    ]
    for response in responses:
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
        if response.status_code >= 400:
            _assert_error(response, response.status_code)
    media = client.get(photo["url"])
    assert media.headers["content-type"] == "image/png"
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_a_stalled_upload_times_out_with_408(make_server: Callable[..., Any]) -> None:
    import requests

    server = make_server(body_timeout=0.5)
    requests.post(f"{server.url}/api/register", json={"username": "alice", "password": PASSWORD})
    token = requests.post(
        f"{server.url}/api/login", json={"username": "alice", "password": PASSWORD}
    ).json()["token"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            "POST /api/photos HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n\x89PNG".encode("latin-1")
        )
        started = time.monotonic()
        raw = _read_response(sock, 5)
        waited = time.monotonic() - started
    assert _status(raw) == 408, raw[:300]
    assert b'"request_timeout"' in raw
    assert 0.3 < waited < 3, waited
    assert requests.get(f"{server.url}/api/users/alice").json()["photos"] == 0


def test_guard_settings_round_trip_through_the_environment() -> None:
    from minigram.settings import Settings

    settings = Settings.for_stage(
        "1", data_dir="/tmp/x", body_timeout=2.5, login_user_limit=4, login_ip_limit=0,
        login_window=9.0, login_ip_exempt=(),
    )
    again = Settings.from_env(settings.to_env())
    assert (again.body_timeout, again.login_user_limit, again.login_ip_limit,
            again.login_window, again.login_ip_exempt) == (2.5, 4, 0, 9.0, ())
    default = Settings.from_env({"MINIGRAM_DATA_DIR": "/tmp/x"})
    assert default.login_ip_exempt == ("127.0.0.1", "::1") and default.login_user_limit > 0
    env = {"MINIGRAM_DATA_DIR": "/tmp/x", "MINIGRAM_LOGIN_IP_EXEMPT": "10.0.0.1, ::1"}
    assert Settings.from_env(env).login_ip_exempt == ("10.0.0.1", "::1")
    with pytest.raises(ValueError):
        Settings.for_stage("1", data_dir="/tmp/x", body_timeout=0)
