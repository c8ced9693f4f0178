"""Sessions and what /healthz tells: tokens expire, ``POST /api/logout/all`` ends every
session, a deleted account's tokens die at once (also when cached, in every stage-2 worker),
and a database that is down is "down" to callers, with the reason in the log only."""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from minigram.app import create_app
from tests.unit.app_server import AppServer, serve_stage_fixture  # noqa: F401 - a fixture

PASSWORD = "password123"


def _call(server: AppServer, method: str, path: str, token: str | None = None,
          body: Any = None) -> tuple[int, Any]:
    """One request on a connection of its own (so stage 2 spreads them over its workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _user(server: AppServer, name: str) -> str:
    body = {"username": name, "password": PASSWORD}
    assert _call(server, "POST", "/api/register", body=body)[0] == 201
    status, answer = _call(server, "POST", "/api/login", body=body)
    assert status == 200, answer
    return str(answer["token"])


def _token_statuses(server: AppServer, token: str, times: int = 6) -> set[int]:
    return {_call(server, "GET", "/api/feed", token)[0] for _ in range(times)}


# --- /healthz -------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["1.5", "2"])
def test_healthz_says_down_without_naming_host_port_or_database(
    stage: str, app_settings_factory: Callable[..., Any], test_client_factory: Callable[..., Any],
    app_free_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    if stage == "2":
        url = f"postgresql://postgres@127.0.0.1:{app_free_port}/secret_db_name"
        settings = app_settings_factory("2", database_url=url)
    else:  # a directory where the database file should be: SQLite cannot open it
        settings = app_settings_factory(stage)
        (settings.data_dir / "secret_db_name.db").mkdir()
        settings = settings.replace(
            database_url=f"sqlite:///{settings.data_dir}/secret_db_name.db"
        )
    client = test_client_factory(create_app(settings))
    with caplog.at_level(logging.WARNING, logger="minigram"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down" and body["components"]["db"] == {
        "status": "down", "backend": settings.database_url.split(":")[0]
    }
    text = response.text
    for secret in ("secret_db_name", str(app_free_port), "127.0.0.1", "Error", "error"):
        assert secret not in text, (secret, text)
    assert "the database is down: OperationalError" in caplog.text  # the operator learns why


# --- token lifetime, logout everywhere, account deletion -------------------------------------


@pytest.mark.parametrize("stage", ["1", "1.5", "2"])
def test_an_expired_token_is_401_even_when_cached(
    stage: str, serve_stage: Callable[..., AppServer]
) -> None:
    server = serve_stage(stage, token_ttl=1.5)
    token = _user(server, "alice")
    assert _token_statuses(server, token) == {200}  # cached now on stages 1.5 and 2
    time.sleep(1.7)
    assert _token_statuses(server, token) == {401}
    again = _call(server, "POST", "/api/login", body={"username": "alice", "password": PASSWORD})
    assert again[0] == 200 and _token_statuses(server, again[1]["token"]) == {200}


@pytest.mark.parametrize("stage", ["1", "1.5", "2"])
def test_logout_all_ends_every_session_in_every_worker(
    stage: str, serve_stage: Callable[..., AppServer]
) -> None:
    server = serve_stage(stage)
    first = _user(server, "alice")
    body = {"username": "alice", "password": PASSWORD}
    others = [_call(server, "POST", "/api/login", body=body)[1]["token"] for _ in range(2)]
    bob = _user(server, "bob")
    for token in (first, *others, bob):
        assert _token_statuses(server, token) == {200}  # cached, by both workers on stage 2
    status, answer = _call(server, "POST", "/api/logout/all", others[0])
    assert (status, answer) == (200, {"logged_out": True, "sessions": 3})
    for token in (first, *others):
        assert _token_statuses(server, token) == {401}
    assert _token_statuses(server, bob) == {200}  # someone else's sessions live on
    assert _call(server, "POST", "/api/logout/all", first)[0] == 401


@pytest.mark.parametrize("stage", ["1", "1.5", "2"])
def test_deleting_an_account_kills_its_cached_tokens_at_once(
    stage: str, serve_stage: Callable[..., AppServer], make_image: Callable[..., bytes]
) -> None:
    import requests

    server = serve_stage(stage)
    alice, bob = _user(server, "alice"), _user(server, "bob")
    photo = requests.post(
        f"{server.url}/api/photos", headers={"Authorization": f"Bearer {alice}"},
        files={"file": ("a.png", make_image(), "image/png")}, timeout=10,
    ).json()
    assert _call(server, "POST", "/api/users/alice/follow", bob)[0] == 200
    assert _call(server, "POST", f"/api/photos/{photo['id']}/like", bob)[0] == 200
    assert _call(server, "GET", "/api/feed", bob)[1]["photos"][0]["id"] == photo["id"]
    assert _call(server, "GET", "/api/users/bob")[1]["following"] == 1
    assert _token_statuses(server, alice) == {200}  # cached
    assert _call(server, "DELETE", "/api/users/alice", bob)[0] == 403  # only one's own
    status, answer = _call(server, "DELETE", "/api/users/ALICE", alice)
    assert (status, answer["deleted"]) == (200, True)
    assert _token_statuses(server, alice) == {401}  # at once, in every worker
    assert _call(server, "GET", "/api/users/alice")[0] == 404
    assert _call(server, "GET", f"/api/photos/{photo['id']}")[0] == 404
    assert requests.get(server.url + photo["url"], timeout=10).status_code == 404
    assert _call(server, "GET", "/api/feed", bob)[1]["photos"] == []
    assert _call(server, "GET", "/api/users/bob")[1]["following"] == 0
    assert _user(server, "Alice")  # the name is free again
