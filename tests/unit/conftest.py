"""Fixtures for the Minigram app tests (tests/unit/test_app_*.py).

Stage 2 runs against the real PostgreSQL and Redis (``MINIGRAM_TEST_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432``; ``MINIGRAM_TEST_REDIS_URL``, default
``redis://127.0.0.1:6379/0``). The session makes its own random database and drops it at the
end, and uses a random Redis key prefix whose keys it deletes at the end. A backend that does
not answer fails the stage-2 tests: nothing is skipped.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("MINIGRAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_TEST_URL = os.environ.get("MINIGRAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
APP_STAGES = ("1", "1.5", "2")
PASSWORD = "password123"


# --- backends ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def app_pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this session; dropped at the end."""
    from sqlalchemy import create_engine, text

    from minigram import db
    from minigram.settings import Settings

    name = f"minigram_test_{uuid.uuid4().hex[:12]}"
    url = f"{PG_ADMIN_URL.rstrip('/')}/{name}"
    settings = Settings.for_stage(
        "2", database_url=url, data_dir=tmp_path_factory.mktemp("pg"), redis_url=REDIS_TEST_URL
    )
    db.upgrade(settings)  # creates the database
    yield url
    admin = create_engine(
        db.engine_url(f"{PG_ADMIN_URL.rstrip('/')}/postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def app_redis_prefix() -> Iterator[str]:
    """A random key prefix for this session; every key under it is deleted at the end."""
    import redis

    prefix = f"minigram-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_TEST_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


_test_counter = itertools.count()


def truncate_pg(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from minigram import db

    engine = create_engine(db.engine_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE likes, follows, photos, tokens, users RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(scope="session")
def app_sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A migrated SQLite file per SQLite stage, copied for each test (faster than migrating)."""
    from minigram import db
    from minigram.settings import Settings

    templates = {}
    for stage in ("1", "1.5"):
        directory = tmp_path_factory.mktemp(f"template-{stage}")
        db.upgrade(Settings.for_stage(stage, data_dir=directory))
        templates[stage] = directory / "minigram.db"
    return templates


# --- settings and apps ------------------------------------------------------------------


@pytest.fixture(params=APP_STAGES)
def app_stage(request: pytest.FixtureRequest) -> str:
    """Each app test runs on stages 1, 1.5 and 2."""
    return str(request.param)


@pytest.fixture
def app_settings_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """``make(stage, **overrides) -> Settings`` on a fresh database, bcrypt cost 4.

    SQLite stages get a copy of a migrated file in ``tmp_path``; stage 2 gets the session's
    PostgreSQL database, emptied, and a Redis prefix of its own.
    """
    from minigram.settings import Settings

    def make(stage: str, **overrides: Any) -> Settings:
        n = next(_test_counter)
        data_dir = tmp_path / f"data-{n}"
        data_dir.mkdir()
        base: dict[str, Any] = {"data_dir": data_dir, "bcrypt_rounds": 4}
        if stage == "2":
            url = request.getfixturevalue("app_pg_url")
            truncate_pg(url)
            prefix = request.getfixturevalue("app_redis_prefix")
            base.update(
                database_url=url,
                redis_url=REDIS_TEST_URL,
                redis_prefix=f"{prefix}{n}:",
                workers=1,
                pool_size=5,
            )
        else:
            templates = request.getfixturevalue("app_sqlite_templates")
            shutil.copyfile(templates[stage], data_dir / "minigram.db")
        base.update(overrides)
        return Settings.for_stage(stage, **base)

    return make


@pytest.fixture
def app_settings(app_settings_factory: Callable[..., Any], app_stage: str) -> Any:
    return app_settings_factory(app_stage)


@pytest.fixture
def test_client_factory() -> Iterator[Callable[..., Any]]:
    """``make(app) -> TestClient`` with the lifespan running; all closed after the test."""
    from starlette.testclient import TestClient

    clients: list[TestClient] = []

    def make(app: Any, **kwargs: Any) -> TestClient:
        client = TestClient(app, **kwargs)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def app_client(test_client_factory: Callable[..., Any], app_settings: Any) -> Any:
    from minigram.app import create_app

    return test_client_factory(create_app(app_settings))


# --- API helpers ------------------------------------------------------------------------


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 8), color: str = "red") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


@dataclass
class Account:
    id: int
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """Short calls for the tests: make users, upload photos."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._names = itertools.count()

    def user(self, username: str | None = None, password: str = PASSWORD) -> Account:
        username = username or f"user_{next(self._names)}"
        response = self.client.post(
            "/api/register", json={"username": username, "password": password}
        )
        assert response.status_code == 201, response.text
        response = self.client.post("/api/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        body = response.json()
        return Account(body["user"]["id"], username, body["token"])

    def upload(
        self,
        account: Account,
        data: bytes | None = None,
        caption: str | None = None,
        filename: str = "photo.png",
        content_type: str = "image/png",
    ) -> Any:
        form = {} if caption is None else {"caption": caption}
        return self.client.post(
            "/api/photos",
            headers=account.headers,
            files={"file": (filename, image_bytes() if data is None else data, content_type)},
            data=form,
        )

    def photo(self, account: Account, caption: str | None = None) -> dict[str, Any]:
        response = self.upload(account, caption=caption)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def follow(self, follower: Account, followee: Account) -> None:
        response = self.client.post(
            f"/api/users/{followee.username}/follow", headers=follower.headers
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def api(app_client: Any) -> Api:
    return Api(app_client)


# --- a real server in a thread ----------------------------------------------------------


class ThreadServer:
    """uvicorn serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ThreadServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the threaded server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def thread_server_factory() -> Iterator[Callable[[Any], ThreadServer]]:
    servers: list[ThreadServer] = []

    def make(app: Any) -> ThreadServer:
        server = ThreadServer(app).__enter__()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """``make_image(fmt="PNG", size=(8, 8), color="red") -> bytes``"""
    return image_bytes


@pytest.fixture
def app_free_port() -> int:
    return free_port()


@pytest.fixture
def api_factory() -> Callable[[Any], Api]:
    """``api_factory(client) -> Api`` for a client built in the test."""
    return Api


PG_ADMIN_URL = os.environ.get("MINIGRAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of the machine's server, dropped afterwards."""
    name = f"minigram_test_{uuid.uuid4().hex[:12]}"
    admin_url = PG_ADMIN_URL.rstrip("/").replace("postgresql://", "postgresql+psycopg2://", 1)
    admin = create_engine(f"{admin_url}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"{PG_ADMIN_URL.rstrip('/')}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            left = conn.execute(text("SELECT count(*) FROM pg_database WHERE datname = :n"),
                                {"n": name}).scalar_one()
        admin.dispose()
    assert left == 0
