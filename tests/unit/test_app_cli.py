"""The ``minigram`` command: db upgrade, seed, and serve on every stage (with clean shutdown)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import create_engine, func, inspect, select, text
from starlette.testclient import TestClient

from minigram import cli
from minigram.app import create_app
from minigram.db import engine_url
from minigram.models import follows, likes, photos, users
from minigram.settings import Settings

REDIS_URL = os.environ.get("MINIGRAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIGRAM_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["MINIGRAM_BCRYPT_ROUNDS"] = "4"
    env.update(extra)
    return env


def minigram(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "minigram", *args],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- db upgrade -------------------------------------------------------------------------


@pytest.mark.parametrize(("stage", "mode"), [("1", "delete"), ("1.5", "wal")])
def test_db_upgrade_on_sqlite_is_idempotent(tmp_path, stage, mode, monkeypatch):
    result = minigram("db", "upgrade", "--stage", stage, "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "database at head" in result.stdout
    for name in [k for k in os.environ if k.startswith("MINIGRAM_")]:
        monkeypatch.delenv(name)
    assert cli.main(["db", "upgrade", "--stage", stage, "--data-dir", str(tmp_path)]) == 0
    db = sqlite3.connect(tmp_path / "minigram.db")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "tokens", "photos", "likes", "follows", "alembic_version"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == mode
    db.close()


def test_db_upgrade_creates_and_migrates_a_postgres_database(tmp_path):
    admin = os.environ.get("MINIGRAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
    name = f"minigram_cli_{uuid.uuid4().hex[:10]}"
    url = f"{admin}/{name}"
    try:
        for _ in range(2):
            result = minigram(
                "db", "upgrade", "--stage", "2", "--database-url", url, "--data-dir", str(tmp_path)
            )
            assert result.returncode == 0, result.stderr
        engine = create_engine(engine_url(url))
        assert {"users", "tokens", "photos", "likes", "follows"} <= set(
            inspect(engine).get_table_names()
        )
        engine.dispose()
    finally:
        engine = create_engine(engine_url(f"{admin}/postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    result = minigram("serve", "--stage", "3")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    result = minigram("serve", "--stage", "1", "--workers", "2", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "one process" in result.stderr
    result = minigram("db", "upgrade", env=clean_env(MINIGRAM_FAULTS="feed:explode=1ms"))
    assert result.returncode == 2
    assert "bad fault" in result.stderr


# --- seed -------------------------------------------------------------------------------


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(engine_url(url))
    with engine.connect() as conn:
        counts = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (users, follows, photos, likes)
        }
    engine.dispose()
    return counts


@pytest.mark.parametrize("stage", ["1", "2"])
def test_seed_loads_users_follows_photos_and_likes(
    app_settings_factory, capsys, monkeypatch, stage
):
    settings = app_settings_factory(stage)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    argv = ["seed", "--users", "60", "--photos", "150", "--likes", "200"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "users: 60 added" in out and "photos: 150/150 files stored" in out

    counts = _counts(settings.database_url)
    assert (counts["users"], counts["photos"], counts["likes"]) == (60, 150, 200)
    assert counts["follows"] > 60 * 2
    engine = create_engine(engine_url(settings.database_url))
    with engine.connect() as conn:
        names = set(conn.execute(select(users.c.username)).scalars())
        popular = conn.execute(
            select(users.c.username, func.count().label("n"))
            .join(follows, follows.c.followee_id == users.c.id)
            .group_by(users.c.username)
            .order_by(text("n DESC"))
            .limit(5)
        ).all()
        filenames = list(conn.execute(select(photos.c.filename)).scalars())
    engine.dispose()
    assert names == {f"seed_user_{i}" for i in range(60)}
    assert {row.username for row in popular} == {f"seed_user_{i}" for i in range(5)}
    assert len(set(filenames)) == 150
    assert all((settings.media_dir / name).is_file() for name in filenames)

    # seeded users log in with the shared password, and their feeds have photos
    with TestClient(create_app(settings)) as client:
        login = client.post(
            "/api/login", json={"username": "seed_user_7", "password": "seedpass123"}
        )
        assert login.status_code == 200
        feed = client.get("/api/feed", headers={"Authorization": f"Bearer {login.json()['token']}"})
        assert feed.status_code == 200 and feed.json()["photos"]
        assert client.get(feed.json()["photos"][0]["url"]).status_code == 200

    # seeding again adds nothing and does not fail; --reset starts over
    before = _counts(settings.database_url)
    assert cli.main(argv) == 0
    assert "users: 0 added" in capsys.readouterr().out
    assert _counts(settings.database_url) == before
    assert cli.main(["seed", "--users", "60", "--photos", "20", "--reset"]) == 0
    assert _counts(settings.database_url)["photos"] == 20
    stored = [p for p in settings.media_dir.iterdir() if p.is_file()]
    assert len(stored) == 20


# --- serve ------------------------------------------------------------------------------


class Served:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minigram", "serve", "--port", str(port), *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"minigram serve exited {self.proc.returncode}:\n{self.tail()}")
            try:
                response = requests.get(self.url + "/healthz", timeout=2)
                if response.status_code == 200:
                    return dict(response.json())
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        pytest.fail(f"minigram serve did not become healthy:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def workers(self) -> list[psutil.Process]:
        """The live uvicorn worker processes (not the multiprocessing resource tracker)."""
        found = []
        for child in psutil.Process(self.proc.pid).children():
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:  # exited, or a zombie not yet reaped
                pass
        return found

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


@pytest.fixture
def serve(tmp_path, app_free_port):
    started: list[Served] = []

    def start(*args: str, **env: str) -> Served:
        served = Served(
            list(args), clean_env(**env), tmp_path / f"serve-{len(started)}.log", app_free_port
        )
        started.append(served)
        return served

    yield start
    for served in started:
        served.close()


def _stop_and_check_nothing_is_left(served: Served, sig: int) -> None:
    children = psutil.Process(served.proc.pid).children(recursive=True)
    multiproc_dirs = set()
    for child in children:
        try:
            multiproc_dirs.add(child.environ().get("PROMETHEUS_MULTIPROC_DIR"))
        except psutil.Error:
            pass
    multiproc_dirs.discard(None)
    os.kill(served.proc.pid, sig)  # the parent only: it must take its workers down
    assert served.proc.wait(timeout=20) == 0, served.tail()
    gone, alive = psutil.wait_procs(children, timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left behind: {alive}"
    for directory in multiproc_dirs:
        assert not os.path.exists(directory)


@pytest.mark.parametrize("stage", ["1", "1.5"])
def test_serve_sqlite_stage_and_ctrl_c(serve, tmp_path, stage):
    served = serve("--stage", stage, "--data-dir", str(tmp_path / "data"))
    health = served.wait_healthy()
    assert health["stage"] == stage and health["status"] == "ok"
    body = {"username": "alice", "password": "password1"}
    assert requests.post(served.url + "/api/register", json=body, timeout=5).status_code == 201
    assert requests.post(served.url + "/api/login", json=body, timeout=5).status_code == 200
    assert served.workers() == []  # one process
    _stop_and_check_nothing_is_left(served, signal.SIGINT)


def _serve_stage_2(serve, tmp_path, pg_url: str, redis_prefix: str):
    return serve("--stage", "2", "--workers", "2", "--data-dir", str(tmp_path / "data"),
                 "--database-url", pg_url, "--redis-url", REDIS_URL,
                 "--redis-prefix", redis_prefix + "serve:")


def test_serve_stage_2_workers_replace_a_killed_one_and_stop_cleanly(
    serve, tmp_path, app_pg_url, app_redis_prefix
):
    served = _serve_stage_2(serve, tmp_path, app_pg_url, app_redis_prefix)
    health = served.wait_healthy()
    assert health["status"] == "ok"
    assert health["components"]["cache"]["status"] == "ok"
    workers = served.workers()
    assert len(workers) == 2

    # metrics are aggregated across the workers
    for _ in range(10):
        requests.get(served.url + "/healthz", timeout=5)
    metrics = requests.get(served.url + "/metrics", timeout=5).text
    assert 'minigram_requests_total{endpoint="healthz",method="GET",status="200"}' in metrics

    # a worker killed outright is replaced, and the others keep serving meanwhile
    workers[0].send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        assert requests.get(served.url + "/healthz", timeout=5).status_code == 200
        now = {w.pid for w in served.workers()}
        if len(now) == 2 and workers[0].pid not in now:
            break
        assert time.monotonic() < deadline, served.tail()
        time.sleep(0.2)
    served.wait_healthy()
    _stop_and_check_nothing_is_left(served, signal.SIGINT)


def test_serve_stage_2_stops_on_sigterm(serve, tmp_path, app_pg_url, app_redis_prefix):
    served = _serve_stage_2(serve, tmp_path, app_pg_url, app_redis_prefix)
    served.wait_healthy()
    assert len(served.workers()) == 2
    _stop_and_check_nothing_is_left(served, signal.SIGTERM)


def test_serve_reads_settings_from_the_environment(serve, tmp_path):
    served = serve(
        MINIGRAM_STAGE="1.5",
        MINIGRAM_DATA_DIR=str(tmp_path / "envdata"),
        MINIGRAM_FAULTS="healthz:delay=30ms",
    )
    assert served.wait_healthy()["stage"] == "1.5"
    response = requests.get(served.url + "/healthz", timeout=5)
    total_ms = float(response.headers["server-timing"].rsplit("total;dur=", 1)[1])
    assert total_ms >= 30
    assert (tmp_path / "envdata" / "minigram.db").is_file()
    _stop_and_check_nothing_is_left(served, signal.SIGINT)


def test_settings_flags_override_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIGRAM_STAGE", "1.5")
    monkeypatch.setenv("MINIGRAM_PORT", "9000")
    args = cli.build_parser().parse_args(["serve", "--port", "9100", "--data-dir", str(tmp_path)])
    settings = cli.settings_from_args(args)
    assert isinstance(settings, Settings)
    assert (settings.stage, settings.port, settings.data_dir) == ("1.5", 9100, tmp_path)
