"""Accounts: register, login, logout, profiles, and bearer tokens, on every stage."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import create_engine, select

from minigram.db import engine_url
from minigram.models import tokens, users


def test_register_returns_the_new_user(app_client):
    response = app_client.post(
        "/api/register", json={"username": "alice_1", "password": "correct horse"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "username": "alice_1"}
    assert isinstance(body["id"], int)


def test_register_taken_username_is_409(app_client, api):
    api.user("alice")
    response = app_client.post("/api/register", json={"username": "alice", "password": "x" * 8})
    assert response.status_code == 409
    assert response.json()["error"] == "username_taken"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ab", "password": "password1"}, "username"),
        ({"username": "a" * 31, "password": "password1"}, "username"),
        ({"username": "bad-name", "password": "password1"}, "username"),
        ({"username": "spa ce", "password": "password1"}, "username"),
        ({"username": "émile", "password": "password1"}, "username"),
        ({"username": "x'; DROP TABLE users;--", "password": "password1"}, "username"),
        ({"username": 12345, "password": "password1"}, "username"),
        ({"password": "password1"}, "username"),
        ({"username": "carol", "password": "short"}, "password"),
        ({"username": "carol", "password": "p" * 129}, "password"),
        ({"username": "carol", "password": None}, "password"),
        ({"username": "carol", "password": ["password1"]}, "password"),
        ({"username": "carol"}, "password"),
        ({"username": "carol", "password": "pass\x00word1"}, "password"),
    ],
)
def test_register_invalid_input_is_422_with_a_reason(app_client, body, field):
    response = app_client.post("/api/register", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "validation_error"
    assert field in error["detail"]


@pytest.mark.parametrize("path", ["/api/register", "/api/login"])
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"username": "carol", "password": "\\ud800password"}', "password"),
        (b'{"username": "\\udfffcarol", "password": "password1"}', "username"),
    ],
)
def test_lone_surrogates_are_422(app_client, path, raw, field):
    response = app_client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_register_accepts_the_boundaries(app_client):
    for username, password in (("abc", "p" * 8), ("z" * 30, "p" * 128), ("A_9", "ü" * 128)):
        response = app_client.post(
            "/api/register", json={"username": username, "password": password}
        )
        assert response.status_code == 201, response.text
        login = app_client.post("/api/login", json={"username": username, "password": password})
        assert login.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
            422,
            "validation_error",
        ),
        (
            {"content": b"null", "headers": {"content-type": "application/json"}},
            422,
            "validation_error",
        ),
        ({"data": {"username": "alice", "password": "password1"}}, 415, "unsupported_media_type"),
        (
            {"content": b'{"username":"alice"}', "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ({"content": b""}, 415, "unsupported_media_type"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ],
)
def test_malformed_bodies_are_client_errors(app_client, kwargs, status, code):
    for path in ("/api/register", "/api/login"):
        response = app_client.post(path, **kwargs)
        assert response.status_code == status, response.text
        assert response.json()["error"] == code


def test_oversized_json_body_is_413(app_client):
    body = b'{"username": "alice", "password": "' + b"p" * 100_000 + b'"}'
    response = app_client.post(
        "/api/register", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_login_returns_a_long_random_token(app_client, api):
    api.user("bob")
    first = app_client.post("/api/login", json={"username": "bob", "password": "password123"})
    second = app_client.post("/api/login", json={"username": "bob", "password": "password123"})
    assert first.status_code == second.status_code == 200
    body = first.json()
    assert body["user"] == {"id": body["user"]["id"], "username": "bob"}
    assert len(body["token"]) >= 22  # >= 128 bits in URL-safe base64
    assert body["token"] != second.json()["token"]


def test_tokens_are_stored_only_hashed(app_client, api, app_settings):
    account = api.user("dora")
    engine = create_engine(engine_url(app_settings.database_url))
    with engine.connect() as conn:
        stored = list(conn.execute(select(tokens.c.token_hash)).scalars())
        password_hash = conn.execute(
            select(users.c.password_hash).where(users.c.username == "dora")
        ).scalar_one()
    engine.dispose()
    assert account.token not in stored
    assert hashlib.sha256(account.token.encode()).hexdigest() in stored
    assert password_hash.startswith("$2b$04$")  # bcrypt at the configured cost


@pytest.mark.parametrize(
    "body",
    [
        {"username": "erin", "password": "wrong password"},
        {"username": "nobody_here", "password": "password123"},
        {"username": "erin\n", "password": "password123"},
        {"username": "bad name!", "password": "password123"},
        {"username": "erin", "password": "p" * 500},
    ],
)
def test_login_with_bad_credentials_is_401(app_client, api, body):
    api.user("erin")
    response = app_client.post("/api/login", json=body)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_credentials"


def test_login_hashes_even_for_an_unknown_user(app_client, api):
    """A dummy hash keeps unknown and known usernames equally slow."""
    response = app_client.post(
        "/api/login", json={"username": "ghost_user", "password": "password123"}
    )
    assert response.status_code == 401
    timing = dict(
        part.strip().split(";dur=") for part in response.headers["server-timing"].split(",")
    )
    assert float(timing["hash"]) > 0.1  # milliseconds: a real bcrypt check ran


def test_login_missing_fields_is_422(app_client):
    response = app_client.post("/api/login", json={"username": "x"})
    assert response.status_code == 422
    assert "password" in response.json()["detail"]


def test_logout_revokes_the_token(app_client, api):
    account = api.user("frank")
    other = app_client.post("/api/login", json={"username": "frank", "password": "password123"})
    other_headers = {"Authorization": f"Bearer {other.json()['token']}"}
    assert app_client.get("/api/feed", headers=account.headers).status_code == 200

    response = app_client.post("/api/logout", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == {"logged_out": True}

    again = app_client.get("/api/feed", headers=account.headers)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_token"
    assert app_client.post("/api/logout", headers=account.headers).status_code == 401
    # another session of the same user is untouched
    assert app_client.get("/api/feed", headers=other_headers).status_code == 200


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "unauthorized"),
        ("Bearer", "invalid_token"),
        ("Bearer ", "invalid_token"),
        ("Basic Zm9vOmJhcg==", "invalid_token"),
        ("Bearer not-a-real-token", "invalid_token"),
        ("Bearer " + "x" * 5000, "invalid_token"),
        ("Bearer ' OR '1'='1", "invalid_token"),
    ],
)
def test_bad_or_missing_tokens_are_401(app_client, header, code):
    headers = {} if header is None else {"Authorization": header}
    for method, path in (
        ("POST", "/api/logout"),
        ("GET", "/api/feed"),
        ("POST", "/api/photos"),
        ("POST", "/api/photos/1/like"),
        ("DELETE", "/api/photos/1/like"),
        ("DELETE", "/api/photos/1"),
        ("POST", "/api/users/someone/follow"),
        ("DELETE", "/api/users/someone/follow"),
    ):
        response = app_client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"] == code
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_profile_counts_followers_following_and_photos(app_client, api):
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    api.follow(bob, alice)
    api.follow(carol, alice)
    api.follow(alice, carol)
    api.photo(alice)
    api.photo(alice)
    response = app_client.get("/api/users/alice")
    assert response.status_code == 200
    assert response.json() == {
        "id": alice.id,
        "username": "alice",
        "followers": 2,
        "following": 1,
        "photos": 2,
    }
    assert app_client.get("/api/users/bob").json()["following"] == 1


@pytest.mark.parametrize("name", ["nobody", "no-such-user", "a", "x" * 40, "%27%20OR%201%3D1"])
def test_unknown_profile_is_404(app_client, name):
    response = app_client.get(f"/api/users/{name}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
