from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg2
import pytest
import redis

from pytest_minigram.minigram_harness import backends
from pytest_minigram.minigram_harness.backends import (
    PG_FIX,
    REDIS_FIX,
    BackendNotOwned,
    BackendUnavailable,
    find_pg_bindir,
    postgres,
    redis_backend,
)
from pytest_minigram.server import free_port, port_in_use

SHARED_PG = "postgresql://postgres@127.0.0.1:5432/test"
SHARED_REDIS = "redis://127.0.0.1:6379/0"


def _reachable(check: object) -> bool:
    try:
        check()  # type: ignore[operator]
    except Exception:
        return False
    return True


shared_pg = pytest.mark.skipif(
    not _reachable(lambda: psycopg2.connect(SHARED_PG, connect_timeout=2).close()),
    reason=f"shared PostgreSQL at {SHARED_PG} not running",
)
shared_redis = pytest.mark.skipif(
    not _reachable(lambda: redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=2).ping()),
    reason=f"shared Redis at {SHARED_REDIS} not running",
)
have_pg_binaries = pytest.mark.skipif(
    find_pg_bindir() is None, reason="PostgreSQL server binaries not installed"
)
have_redis_binary = pytest.mark.skipif(
    backends.find_redis_server() is None, reason="redis-server not installed"
)


@pytest.fixture(autouse=True)
def no_leftovers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Private temp base (traversable by the 'postgres' user) that must end up empty."""
    base = Path(tempfile.mkdtemp(prefix="test-backends-"))
    base.chmod(0o755)
    monkeypatch.setattr(backends, "TEMP_BASE", str(base))
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}  # e.g. a perf session's servers
    try:
        yield
        left = [p for p in me.children(recursive=True)
                if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for p in left:
            p.kill()
        assert not left, f"processes left behind: {left}"
        assert list(base.iterdir()) == [], "temp dirs left behind"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def pg_databases(admin_url: str) -> set[str]:
    with psycopg2.connect(admin_url, connect_timeout=3) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database")
        names = {row[0] for row in cur.fetchall()}
    conn.close()
    return names


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    alive = [p for p in pids if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if running(p)]
    return alive


@contextmanager
def fake_bindir(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> Iterator[Path]:
    """Scripts in a dir any user (also 'postgres') can execute, alone on PATH; removed after."""
    bindir = Path(tempfile.mkdtemp(prefix="fakebin-", dir=backends.TEMP_BASE))
    try:
        bindir.chmod(0o755)
        for name, body in names.items():
            path = bindir / name
            path.write_text(f"#!/bin/sh\n{body}\n")
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | 0o044)
        with monkeypatch.context() as patch:
            patch.setenv("PATH", str(bindir))
            yield bindir
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


# ---------------------------------------------------------------------------- PostgreSQL


@shared_pg
def test_pg_url_mode_creates_and_drops_a_fresh_database() -> None:
    with postgres(url=SHARED_PG) as pg:
        assert not pg.owned and pg.admin_url == SHARED_PG
        assert pg.dbname.startswith("minigram_") and pg.url.endswith(f"/{pg.dbname}")
        assert pg.dbname in pg_databases(SHARED_PG)
        conn = pg.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (x int)")
            cur.execute("SELECT current_database()")
            assert cur.fetchone() == (pg.dbname,)
        conn.commit()
        # a connection still open at exit must not block the drop
        lingering = psycopg2.connect(pg.url)
        with pytest.raises(BackendNotOwned, match="refusing to restart PostgreSQL"):
            pg.restart()
        with pytest.raises(BackendNotOwned, match="not owned"):
            pg.stop()
    assert pg.dbname not in pg_databases(SHARED_PG)
    with pytest.raises(psycopg2.OperationalError), lingering.cursor() as cur:
        cur.execute("SELECT 1")  # its backend was terminated before the drop
    lingering.close()
    conn.close()


@shared_pg
def test_pg_url_mode_keep_leaves_the_database() -> None:
    with postgres(url=SHARED_PG, keep=True) as pg:
        pass
    try:
        assert pg.dbname in pg_databases(SHARED_PG)
    finally:
        backends._drop_database(SHARED_PG, pg.dbname)
    assert pg.dbname not in pg_databases(SHARED_PG)


def test_pg_unreachable_url_fails_fast_naming_the_url() -> None:
    port = free_port()
    url = f"postgresql://minigram:s3cret@127.0.0.1:{port}/app"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        with postgres(url=url):
            pass
    assert time.monotonic() - started < 5
    message = str(info.value)
    shown = f"postgresql://minigram:***@127.0.0.1:{port}/app"
    assert f"PostgreSQL at {shown} is not reachable" in message
    assert "s3cret" not in message
    assert "Connection refused" in message


def test_pg_url_with_wrong_scheme() -> None:
    with pytest.raises(BackendUnavailable, match="is not a postgresql:// URL"):
        backends.open_postgres("mysql://root@127.0.0.1/x")


@have_pg_binaries
def test_pg_throwaway_server_lifecycle() -> None:
    started = time.monotonic()
    with postgres() as pg:
        startup = time.monotonic() - started
        assert pg.owned and pg.alive and pg.tmpdir is not None and pg.tmpdir.is_dir()
        assert pg.dbname in pg_databases(pg.admin_url)
        assert pg.admin_url.startswith("postgresql://postgres@127.0.0.1:")
        server = pg._server
        assert server is not None and server.pid is not None
        master = psutil.Process(server.pid)
        if os.geteuid() == 0:
            assert master.username() == "postgres"
        pids = [master.pid, *(c.pid for c in master.children(recursive=True))]
        conn = pg.connect()
        with conn.cursor() as cur:
            cur.execute("SHOW fsync")
            assert cur.fetchone() == ("off",)
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone() == ("127.0.0.1",)
            cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        conn.commit()
        conn.close()

        pg.stop()
        assert not pg.alive
        with pytest.raises(psycopg2.OperationalError):
            pg.connect()
        pg.start()
        conn = pg.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT x FROM t")
            assert cur.fetchone() == (42,)
        # restart with a client connected: fast shutdown does not wait for it
        t0 = time.monotonic()
        pg.restart()
        assert time.monotonic() - t0 < 10
        conn.close()
        assert pg.alive
        pids += [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
        port = pg.port
        assert port is not None and f":{port}/" in pg.admin_url
    assert wait_gone(pids) == []
    assert not pg.tmpdir.exists()
    assert not port_in_use("127.0.0.1", port)
    assert startup < 30


def test_pg_missing_binaries_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(backends, "PG_BIN_GLOBS", [])
    assert find_pg_bindir() is None
    with pytest.raises(BackendUnavailable) as info:
        with postgres():
            pass
    message = str(info.value)
    assert "no PostgreSQL server binaries found" in message
    assert PG_FIX in message
    assert (
        "install PostgreSQL 15 server binaries (Debian: apt-get install postgresql) or pass "
        "--minigram-pg-url / set MINIGRAM_PG_URL" in message
    )


def test_pg_failing_initdb_is_unavailable_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "PG_BIN_GLOBS", [])
    scripts = {"initdb": "echo 'initdb: disk on fire' >&2; exit 1", "postgres": "exit 1"}
    with fake_bindir(monkeypatch, scripts), pytest.raises(BackendUnavailable) as info:
        backends.open_postgres()
    message = str(info.value)
    assert "failed with exit code 1" in message and "disk on fire" in message
    assert PG_FIX in message


def test_pg_failing_server_is_unavailable_with_log_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "PG_BIN_GLOBS", [])
    scripts = {"initdb": 'mkdir -p "$2"; exit 0',
               "postgres": "echo 'FATAL: shared memory gone'; exit 2"}
    with fake_bindir(monkeypatch, scripts), pytest.raises(BackendUnavailable) as info:
        backends.open_postgres()
    message = str(info.value)
    assert "exited with code 2 during start-up" in message
    assert "FATAL: shared memory gone" in message and PG_FIX in message


def test_find_pg_bindir_picks_the_newest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for version in ("9.6", "15", "10"):
        bindir = tmp_path / "pg" / version / "bin"
        bindir.mkdir(parents=True)
        (bindir / "initdb").touch()
        (bindir / "postgres").touch()
    (tmp_path / "pg" / "16" / "bin").mkdir(parents=True)  # incomplete: no binaries
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(backends, "PG_BIN_GLOBS", [str(tmp_path / "pg" / "*" / "bin")])
    assert find_pg_bindir() == tmp_path / "pg" / "15" / "bin"


# ---------------------------------------------------------------------------- Redis


@shared_redis
def test_redis_url_mode_deletes_only_its_prefix() -> None:
    shared = redis.Redis.from_url(SHARED_REDIS)
    outsider = f"minigram-test-outsider-{secrets.token_hex(6)}"
    shared.set(outsider, "keep me")
    try:
        with redis_backend(url=SHARED_REDIS) as rd:
            assert not rd.owned and rd.url == SHARED_REDIS
            assert rd.prefix.startswith("minigram-") and rd.prefix.endswith(":")
            client = rd.client()
            for i in range(1200):  # more than one SCAN page and one DEL batch
                client.set(f"{rd.prefix}k{i}", i)
            client.hset(f"{rd.prefix}h", "a", 1)
            client.close()
            with pytest.raises(BackendNotOwned, match="refusing to stop Redis"):
                rd.stop()
            with pytest.raises(BackendNotOwned):
                rd.start()
        assert list(shared.scan_iter(match=f"{rd.prefix}*")) == []
        assert shared.get(outsider) == b"keep me"
    finally:
        shared.delete(outsider)
        shared.close()


def test_redis_unreachable_url_fails_fast_naming_the_url() -> None:
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/3"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        with redis_backend(url=url):
            pass
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"Redis at redis://:***@127.0.0.1:{port}/3 is not reachable" in message
    assert "hunter2" not in message


def test_redis_bad_url() -> None:
    with pytest.raises(BackendUnavailable, match="is not valid"):
        backends.open_redis("http://127.0.0.1:6379")


@have_redis_binary
def test_redis_throwaway_lifecycle() -> None:
    with redis_backend() as rd:
        assert rd.owned and rd.alive and rd.tmpdir is not None and rd.tmpdir.is_dir()
        assert rd.url == f"redis://127.0.0.1:{rd.port}/0" and rd.port != 6379
        server = rd._server
        assert server is not None and server.pid is not None
        pid = server.pid
        with rd.client() as client:
            client.set(f"{rd.prefix}a", 1)
            assert client.get(f"{rd.prefix}a") == b"1"
        rd.stop()
        assert not rd.alive
        with pytest.raises(redis.ConnectionError), rd.client() as client:
            client.ping()
        rd.start()
        with rd.client() as client:
            assert client.ping()
        pids = [pid, server.pid]
        rd.restart()
        pids.append(server.pid)
    assert wait_gone([p for p in pids if p is not None]) == []
    assert not rd.tmpdir.exists()


def test_redis_missing_binary_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailable) as info:
        with redis_backend():
            pass
    message = str(info.value)
    assert "no redis-server binary found" in message and REDIS_FIX in message
    assert "--minigram-redis-url / set MINIGRAM_REDIS_URL" in message


def test_redis_failing_server_is_unavailable_with_log_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripts = {"redis-server": "echo 'Fatal: cannot allocate'; exit 1"}
    with fake_bindir(monkeypatch, scripts), pytest.raises(BackendUnavailable) as info:
        backends.open_redis()
    message = str(info.value)
    assert "Fatal: cannot allocate" in message and REDIS_FIX in message
