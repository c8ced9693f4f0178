"""Usernames: matched whole, NFKC-normalised, one account whatever the case; and migration
0002, which makes existing rows fit, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from minigram import db, queries
from minigram.app import create_app
from minigram.auth import hash_password
from minigram.models import users
from minigram.settings import Settings

PASSWORD = "password123"
PG_ADMIN_URL = os.environ.get("MINIGRAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_TEST_URL = os.environ.get("MINIGRAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def client(app_settings_factory: Callable[..., Any], app_stage: str,
           test_client_factory: Callable[..., Any]) -> Any:
    settings = app_settings_factory(app_stage, login_user_limit=0)
    return test_client_factory(create_app(settings))


def _register(client: Any, name: str) -> Any:
    return client.post("/api/register", json={"username": name, "password": PASSWORD})


def _login(client: Any, name: str) -> Any:
    return client.post("/api/login", json={"username": name, "password": PASSWORD})


def test_a_name_with_a_trailing_newline_is_no_username(client: Any) -> None:
    for name in ("alice\n", "alice\r\n", "\nalice", "alice\x0b"):
        assert _register(client, name).status_code == 422, repr(name)
    assert _register(client, "alice").status_code == 201
    assert _login(client, "alice\n").status_code == 401
    assert client.get("/api/users/alice%0A").status_code == 404
    token = _login(client, "alice").json()["token"]
    _register(client, "bob")
    bob = {"Authorization": f"Bearer {_login(client, 'bob').json()['token']}"}
    assert client.post("/api/users/alice%0A/follow", headers=bob).status_code == 404
    assert client.get("/api/users/alice").json()["username"] == "alice"
    assert token


def test_names_that_differ_in_case_or_width_are_one_account(client: Any) -> None:
    created = _register(client, "Alice")
    assert created.status_code == 201 and created.json()["username"] == "Alice"
    for twin in ("alice", "ALICE", "aLiCe", "\uff41\uff4c\uff49\uff43\uff45"):  # ａｌｉｃｅ
        response = _register(client, twin)
        assert response.status_code == 409, (twin, response.text)
        assert response.json()["error"] == "username_taken"
    # NFKC: fullwidth letters register as the plain ones
    assert _register(client, "\uff42\uff4f\uff42").json()["username"] == "bob"
    ids = set()
    for name in ("Alice", "alice", "ALICE"):
        response = _login(client, name)
        assert response.status_code == 200, name
        assert response.json()["user"]["username"] == "Alice"
        ids.add(response.json()["user"]["id"])
    assert ids == {created.json()["id"]}
    for path in ("alice", "ALICE", "Alice"):
        profile = client.get(f"/api/users/{path}")
        assert profile.status_code == 200 and profile.json()["username"] == "Alice", path
    bob = {"Authorization": f"Bearer {_login(client, 'BOB').json()['token']}"}
    assert client.post("/api/users/ALICE/follow", headers=bob).status_code == 200
    assert client.get("/api/users/alice").json()["followers"] == 1  # the cached one moved too
    alice = {"Authorization": f"Bearer {_login(client, 'alice').json()['token']}"}
    refused = client.post("/api/users/aLICE/follow", headers=alice)
    assert refused.status_code == 422 and refused.json()["error"] == "cannot_follow_self"
    assert client.delete("/api/users/alice/follow", headers=bob).status_code == 200
    assert client.get("/api/users/ALICE").json()["followers"] == 0


def test_the_database_refuses_a_second_account_of_another_case(
    app_settings_factory: Callable[..., Any], app_stage: str
) -> None:
    database = db.Database(app_settings_factory(app_stage))
    try:
        with database.write() as conn:
            queries.create_user(conn, "Dave", "x")
        with pytest.raises(sa_exc.IntegrityError), database.write() as conn:
            queries.create_user(conn, "dave", "x")
    finally:
        database.dispose()


# --- migration 0002 on existing rows ------------------------------------------------------


def _at_revision(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    engine = create_engine(db.engine_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings of a database at revision 0001 (before usernames were folded)."""
    if request.param == "sqlite":
        settings = Settings.for_stage("1.5", data_dir=tmp_path, bcrypt_rounds=4)
        _at_revision(settings.database_url, "0001")
        yield settings
        return
    name = f"minigram_migration_{uuid.uuid4().hex[:12]}"
    admin = create_engine(db.engine_url(f"{PG_ADMIN_URL.rstrip('/')}/postgres"),
                          isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN_URL.rstrip('/')}/{name}"
    try:
        _at_revision(url, "0001")
        prefix = request.getfixturevalue("app_redis_prefix")
        yield Settings.for_stage("2", data_dir=tmp_path, database_url=url, bcrypt_rounds=4,
                                 redis_url=REDIS_TEST_URL, redis_prefix=f"{prefix}migration:")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_keeps_the_oldest_of_each_name_and_renames_the_others(
    old_database: Settings,
) -> None:
    t0 = dt.datetime(2025, 1, 1)
    hashed = hash_password(PASSWORD, 4)
    rows = [  # (id, name, minutes after t0)
        (1, "alice", 0),
        (2, "Alice", 1),
        (3, "ALICE", 2),
        (4, "alice\n", 3),
        (5, "bob", 5),
        (6, "Alice_2", 6),  # the name "Alice" would get: taken, so it gets "_2_2"
        (7, "BOB", 4),  # older than "bob" (id 5), so it keeps its name
        (8, "\uff43\uff41\uff52\uff4f\uff4c", 7),  # fullwidth "carol": stored as "carol"
        (9, "Carol", 8),
    ]
    engine = create_engine(db.engine_url(old_database.database_url), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(insert(users), [
            {"id": i, "username": name, "password_hash": hashed,
             "created_at": t0 + dt.timedelta(minutes=m)}
            for i, name, m in rows
        ])
    engine.dispose()

    db.upgrade(old_database)  # to head, as `minigram serve` does

    engine = create_engine(db.engine_url(old_database.database_url), poolclass=NullPool)
    with engine.connect() as conn:
        names = dict(conn.execute(select(users.c.id, users.c.username)).all())
    engine.dispose()
    assert names == {
        1: "alice", 2: "Alice_2_2", 3: "ALICE_3", 4: "alice__4", 5: "bob_5", 6: "Alice_2",
        7: "BOB", 8: "carol", 9: "Carol_9",
    }
    # every renamed account logs in under its new name with its old password
    from starlette.testclient import TestClient

    settings = old_database.replace(login_user_limit=0)
    with TestClient(create_app(settings)) as client:
        for user_id, name in names.items():
            response = client.post("/api/login", json={"username": name, "password": PASSWORD})
            assert response.status_code == 200, (name, response.text)
            assert response.json()["user"]["id"] == user_id
        assert _register(client, "alice_3").status_code == 409

