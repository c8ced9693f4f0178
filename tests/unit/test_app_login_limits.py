"""Login throttling on a real ``minigram serve``, on every stage (two workers on stage 2).

Attempts are counted before the password is checked, so parallel wrong logins never get more
401s than the limit; and they are counted per account AND source address, so an attacker's
failures from one loopback address throttle that address only while the owner logs in from
another. Clients bind 127.0.0.2, 127.0.0.3, ... (all of 127.0.0.0/8 is this machine), which
are not exempt from anything, unlike 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.app_server import AppServer, serve_stage_fixture  # noqa: F401 - a fixture

PASSWORD = "password123"
LIMIT = 10


@pytest.fixture(params=["1", "1.5", "2"])
def stage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _call(
    server: AppServer, path: str, body: dict[str, Any], source: str = "127.0.0.1"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        conn.close()


def _login(server: AppServer, username: str, password: str, source: str) -> int:
    return _call(server, "/api/login", {"username": username, "password": password}, source)[0]


def _parallel_logins(server: AppServer, n: int, source: str) -> Counter[int]:
    """``n`` wrong logins for alice, all sent at the same moment on their own connections."""
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60,
                                          source_address=(source, 0))
        conn.connect()
        body = json.dumps({"username": "alice", "password": "wrong-password"})
        try:
            barrier.wait(timeout=30)
            conn.request("POST", "/api/login", body, {"Content-Type": "application/json"})
            status = conn.getresponse().status
        finally:
            conn.close()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    return Counter(statuses)


def test_parallel_wrong_logins_get_no_more_401s_than_the_limit(
    stage: str, serve_stage: Callable[..., AppServer]
) -> None:
    # bcrypt cost 8 (~15 ms a check) leaves the checks of a burst time to overlap
    server = serve_stage(stage, bcrypt_rounds=8, login_user_limit=LIMIT, login_ip_limit=0)
    assert _call(server, "/api/register", {"username": "alice", "password": PASSWORD})[0] == 201
    statuses = _parallel_logins(server, 40, "127.0.0.2")
    # shared by both workers on stage 2: one count, not one per worker
    assert statuses == {401: LIMIT, 429: 40 - LIMIT}, statuses
    assert _login(server, "alice", PASSWORD, "127.0.0.2") == 429  # throttled, right password
    assert _login(server, "alice", PASSWORD, "127.0.0.3") == 200  # the owner, elsewhere


def test_an_attacker_cannot_lock_the_owner_out(
    stage: str, serve_stage: Callable[..., AppServer]
) -> None:
    server = serve_stage(stage, login_user_limit=3, login_window=30, login_ip_limit=0)
    assert _call(server, "/api/register", {"username": "alice", "password": PASSWORD})[0] == 201
    attacker, owner = "127.0.0.2", "127.0.0.3"
    assert [_login(server, "ALICE", "guess-guess", attacker) for _ in range(3)] == [401] * 3
    status, body, headers = _call(
        server, "/api/login", {"username": "alice", "password": "guess-guess"}, attacker
    )
    assert status == 429 and body["error"] == "too_many_attempts"
    assert 1 <= int(headers["retry-after"]) <= 30
    # the owner, from another address, in any case: logs in, again and again
    for name in ("alice", "Alice", "alice"):
        assert _login(server, name, PASSWORD, owner) == 200
    # ... and a wrong password of theirs counts for their address only
    assert _login(server, "alice", "typo-typo", owner) == 401
    assert _login(server, "alice", PASSWORD, owner) == 200
    # while the attacker's address stays throttled for alice, even with the right password
    assert _login(server, "alice", PASSWORD, attacker) == 429


def test_stage_2_without_redis_still_throttles_in_the_process(
    app_settings_factory: Callable[..., Any], test_client_factory: Callable[..., Any],
    api_factory: Callable[[Any], Any],
) -> None:
    settings = app_settings_factory("2", redis_url="redis://127.0.0.1:1/0", login_user_limit=2)
    from minigram.app import create_app

    client = test_client_factory(create_app(settings))
    api_factory(client).user("alice")
    wrong = {"username": "alice", "password": "wrong-password"}
    assert [client.post("/api/login", json=wrong).status_code for _ in range(3)] == [401, 401, 429]
