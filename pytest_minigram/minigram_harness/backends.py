"""PostgreSQL and Redis for stage 2: connect to a given URL, or spawn a throwaway server.

Given a URL, nothing of the user's is touched: PostgreSQL gets a fresh ``minigram_<hex>``
database that is dropped afterwards, and Redis gets a key prefix whose keys (only those)
are deleted afterwards with SCAN + DEL, never FLUSHDB.

Without a URL, a throwaway server is started from the installed binaries in a temp dir on
a free port, supervised by :class:`~pytest_minigram.server.ServerProcess` (own process
group, PDEATHSIG), and removed afterwards. PostgreSQL refuses to run as root: when this
process is root, ``initdb`` and ``postgres`` run as the ``postgres`` OS user (``user=`` of
``subprocess.Popen``) and the temp dir is chowned to that user. The temp dir lives in the
system temp dir (``tempfile.gettempdir()``, or ``TEMP_BASE``), which that user can traverse.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import redis
from psycopg2 import sql

from pytest_minigram.redact import redact_url
from pytest_minigram.server import ServerError, ServerProcess, free_port, port_in_use

__all__ = [
    "BackendError",
    "BackendNotOwned",
    "BackendUnavailable",
    "PG_BINDIR_ENV",
    "PG_FIX",
    "PostgresBackend",
    "REDIS_FIX",
    "RedisBackend",
    "find_pg_bindir",
    "find_redis_server",
    "open_postgres",
    "open_redis",
    "postgres",
    "redis_backend",
]

PG_FIX = (
    "install PostgreSQL 15 server binaries (Debian: apt-get install postgresql) "
    "or pass --minigram-pg-url / set MINIGRAM_PG_URL"
)
REDIS_FIX = (
    "install the Redis server (Debian: apt-get install redis-server) "
    "or pass --minigram-redis-url / set MINIGRAM_REDIS_URL"
)
# Searched after PATH; the newest version wins.
PG_BIN_GLOBS: list[str] = ["/usr/lib/postgresql/*/bin"]
# Names the one directory to take the PostgreSQL server binaries from (no search then).
PG_BINDIR_ENV = "MINIGRAM_PG_BINDIR"
CONNECT_TIMEOUT = 3
# Where throwaway servers get their temp dirs (None: tempfile.gettempdir()). When running as
# root it must be traversable by the 'postgres' user: pytest's 0700 tmp_path is not.
TEMP_BASE: str | None = None
START_TIMEOUT = 60.0
PORT_ATTEMPTS = 3
PG_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class BackendError(RuntimeError):
    """Base class for backend errors."""


class BackendUnavailable(BackendError):
    """No usable backend: an unreachable URL, or no (working) binaries to spawn one."""


class BackendNotOwned(BackendError):
    """stop/start/restart on a backend this session did not start."""




def _with_path(url: str, path: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=path))


def _libpq_url(url: str) -> str:
    """postgresql+psycopg2://... (SQLAlchemy style) -> postgresql://... for libpq."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _pg_sort_key(bindir: Path) -> tuple[int, ...]:
    version = bindir.parent.name
    return tuple(int(p) for p in re.findall(r"\d+", version)) or (0,)


def _is_pg_bindir(path: Path) -> bool:
    return (path / "initdb").exists() and (path / "postgres").exists()


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb`` and ``postgres``.

    ``$MINIGRAM_PG_BINDIR`` when set (and only there), else from PATH, else the newest
    packaged one.
    """
    given = os.environ.get(PG_BINDIR_ENV)
    if given:
        return Path(given) if _is_pg_bindir(Path(given)) else None
    initdb = shutil.which("initdb")
    if initdb:
        bindir = Path(initdb).resolve().parent
        if (bindir / "postgres").exists():
            return bindir
    found = [
        Path(p)
        for pattern in PG_BIN_GLOBS
        for p in sorted(Path("/").glob(pattern.lstrip("/")))
        if _is_pg_bindir(Path(p))
    ]
    return max(found, key=_pg_sort_key) if found else None


def find_redis_server() -> Path | None:
    found = shutil.which("redis-server")
    return Path(found) if found else None


@dataclass
class _RunAs:
    user: str | None
    uid: int
    gid: int

    @classmethod
    def for_postgres(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(None, os.getuid(), os.getgid())
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise BackendUnavailable(
                "cannot start a throwaway PostgreSQL: this process runs as root, PostgreSQL "
                "refuses to run as root, and there is no 'postgres' OS user to run it as "
                f"(create one with 'useradd --system postgres'); or {PG_FIX}"
            ) from None
        return cls("postgres", entry.pw_uid, entry.pw_gid)

    def server_kwargs(self) -> dict[str, Any]:
        return {} if self.user is None else {"user": self.uid, "group": self.gid}

    def popen_kwargs(self) -> dict[str, Any]:
        return {**self.server_kwargs(), "extra_groups": []} if self.user else {}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class _Owned:
    """Shared stop/start/restart for backends backed by a throwaway server."""

    _server: ServerProcess | None
    name: str
    url: str

    @property
    def port(self) -> int | None:
        return urllib.parse.urlsplit(self.url).port

    @property
    def owned(self) -> bool:
        return self._server is not None

    def _require_owned(self, what: str) -> ServerProcess:
        if self._server is None:
            raise BackendNotOwned(
                f"refusing to {what} {self.name}: it was given by URL and is not owned by this "
                "session; only throwaway servers started here can be stopped or restarted"
            )
        return self._server

    @property
    def alive(self) -> bool:
        return self._server is not None and self._server.alive

    def stop(self, timeout: float = 10.0) -> None:
        self._require_owned("stop").stop(timeout=timeout)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        server = self._require_owned("start")
        try:
            server.start(timeout=timeout)
        except ServerError as exc:
            raise BackendUnavailable(f"throwaway {self.name} did not restart: {exc}") from exc

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self._require_owned("restart")
        self.stop()
        self.start(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        return self._server.log_tail(lines) if self._server else ""


# ---------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresBackend(_Owned):
    """``url`` points at a fresh database made for this session; ``admin_url`` at the server."""

    url: str
    admin_url: str
    dbname: str
    keep: bool = False
    tmpdir: Path | None = None
    _server: ServerProcess | None = field(default=None, repr=False)
    name: str = field(default="PostgreSQL", repr=False)

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg2 connection to the session database."""
        return psycopg2.connect(_libpq_url(self.url), connect_timeout=CONNECT_TIMEOUT, **kwargs)

    def close(self) -> None:
        """Drop the database (unless keep), stop an owned server, remove its temp dir."""
        try:
            if not self.keep and self._server is None:
                _drop_database(self.admin_url, self.dbname)
        finally:
            if self._server is not None:
                self._server.stop()
                if self.tmpdir is not None and not self.keep:
                    shutil.rmtree(self.tmpdir, ignore_errors=True)


def _admin_connect(admin_url: str) -> Any:
    conn = psycopg2.connect(_libpq_url(admin_url), connect_timeout=CONNECT_TIMEOUT)
    conn.autocommit = True
    return conn


def _create_database(admin_url: str) -> str:
    name = f"minigram_{secrets.token_hex(6)}"
    conn = _admin_connect(admin_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return name


def _drop_database(admin_url: str, name: str) -> None:
    conn = _admin_connect(admin_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            force = sql.SQL(" WITH (FORCE)") if conn.server_version >= 130000 else sql.SQL("")
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force)
            )
    finally:
        conn.close()


def _pg_ready(admin_url: str) -> bool:
    psycopg2.connect(_libpq_url(admin_url), connect_timeout=2).close()
    return True


def _connect_given_postgres(url: str, keep: bool) -> PostgresBackend:
    shown = redact_url(url)
    if not re.match(r"postgres(ql)?(\+\w+)?://", url):
        raise BackendUnavailable(
            f"PostgreSQL URL {shown!r} is not a postgresql:// URL "
            "(expected postgresql://user[:password]@host:port/dbname)"
        )
    try:
        dbname = _create_database(url)
    except psycopg2.OperationalError as exc:
        raise BackendUnavailable(
            f"PostgreSQL at {shown} is not reachable: {_one_line(exc)}; start it, or pass a "
            "reachable --minigram-pg-url / MINIGRAM_PG_URL, or unset both to start a "
            "throwaway server from the installed PostgreSQL binaries"
        ) from exc
    except psycopg2.Error as exc:
        raise BackendUnavailable(
            f"cannot create a database on PostgreSQL at {shown}: {_one_line(exc)} "
            "(the user needs the CREATEDB privilege)"
        ) from exc
    return PostgresBackend(
        url=_with_path(url, f"/{dbname}"), admin_url=url, dbname=dbname, keep=keep
    )


def _run_initdb(bindir: Path, datadir: Path, run_as: _RunAs, cwd: Path) -> None:
    argv = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync"]  # fmt: skip
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=120,
            **run_as.popen_kwargs(),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendUnavailable(
            f"cannot run {argv[0]} for a throwaway PostgreSQL: {exc}; {PG_FIX}"
        ) from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BackendUnavailable(
            f"{argv[0]} failed with exit code {done.returncode} for a throwaway PostgreSQL; "
            f"{PG_FIX}\n--- initdb output ---\n{output}"
        )


def _start_on_free_port(make: Callable[[int], ServerProcess], fix: str) -> ServerProcess:
    """Start ``make(port)`` on a free port, and on another one if that is taken meanwhile.

    ``free_port()`` only says the port was free a moment ago: another process (another
    session on this machine) may bind it before the server does.
    """
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        server = make(port)
        try:
            return server.start(timeout=START_TIMEOUT)  # stops the server when it fails
        except ServerError as exc:
            if attempt < PORT_ATTEMPTS and port_in_use("127.0.0.1", port):
                continue
            raise BackendUnavailable(f"{exc}\n{fix}") from exc
    raise AssertionError("unreachable")


def _pg_admin_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _spawn_postgres(keep: bool) -> PostgresBackend:
    bindir = find_pg_bindir()
    if bindir is None:
        given = os.environ.get(PG_BINDIR_ENV)
        where = (f"in {PG_BINDIR_ENV}={given}" if given else
                 f"on PATH and in {', '.join(PG_BIN_GLOBS) or 'no other place'}")
        raise BackendUnavailable(
            f"no PostgreSQL server binaries found (looked for initdb and postgres {where}) "
            f"to start a throwaway server: {PG_FIX}"
        )
    run_as = _RunAs.for_postgres()
    tmpdir = Path(tempfile.mkdtemp(prefix="minigram-pg-", dir=TEMP_BASE))
    server: ServerProcess | None = None
    try:
        if run_as.user is not None:
            os.chown(tmpdir, run_as.uid, run_as.gid)
        datadir = tmpdir / "data"
        _run_initdb(bindir, datadir, run_as, tmpdir)
        settings = {
            **PG_SETTINGS,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(tmpdir),
        }

        def make(port: int) -> ServerProcess:
            argv = [str(bindir / "postgres"), "-D", str(datadir), "-p", str(port)]
            for key, value in settings.items():
                argv += ["-c", f"{key}={value}"]
            url = _pg_admin_url(port)
            return ServerProcess(
                argv,
                log_path=tmpdir / "postgres.log",
                env=_clean_env(),
                inherit_env=False,
                ready=lambda: _pg_ready(url),
                port=port,
                host="127.0.0.1",
                name="throwaway PostgreSQL",
                cwd=tmpdir,
                stop_signal=signal.SIGINT,  # fast shutdown: disconnect clients, no waiting
                **run_as.server_kwargs(),
            )

        server = _start_on_free_port(make, PG_FIX)
        admin_url = _pg_admin_url(server.port or 0)
        dbname = _create_database(admin_url)
        return PostgresBackend(
            url=_with_path(admin_url, f"/{dbname}"),
            admin_url=admin_url,
            dbname=dbname,
            keep=keep,
            tmpdir=tmpdir,
            _server=server,
        )
    except BaseException:
        if server is not None:
            server.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def open_postgres(url: str | None = None, keep: bool = False) -> PostgresBackend:
    """Connect to ``url`` (fresh database) or spawn a throwaway server; call ``close()``."""
    return _connect_given_postgres(url, keep) if url else _spawn_postgres(keep)


@contextmanager
def postgres(url: str | None = None, keep: bool = False) -> Iterator[PostgresBackend]:
    """A fresh PostgreSQL database for this session, removed on exit.

    ``keep=True`` leaves the database (URL mode) or the data directory (throwaway mode).
    """
    backend = open_postgres(url, keep)
    try:
        yield backend
    finally:
        backend.close()


# ---------------------------------------------------------------------------- Redis


@dataclass
class RedisBackend(_Owned):
    """With a given URL, the app must put every key under ``prefix``."""

    url: str
    prefix: str
    tmpdir: Path | None = None
    _server: ServerProcess | None = field(default=None, repr=False)
    name: str = field(default="Redis", repr=False)

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
            **kwargs,
        )

    def delete_keys(self) -> int:
        """Delete the keys under ``prefix`` (SCAN + DEL); return how many were deleted."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"
        deleted = 0
        with self.client() as client:
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(client.delete(*batch))
                    batch.clear()
            if batch:
                deleted += int(client.delete(*batch))
        return deleted

    def close(self) -> None:
        if self._server is None:
            self.delete_keys()
            return
        self._server.stop()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def _new_prefix() -> str:
    return f"minigram-{secrets.token_hex(6)}:"


def _redis_ping(url: str, timeout: float) -> bool:
    with redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout
    ) as client:
        return bool(client.ping())


def _connect_given_redis(url: str) -> RedisBackend:
    shown = redact_url(url)
    try:
        _redis_ping(url, CONNECT_TIMEOUT)
    except ValueError as exc:
        raise BackendUnavailable(
            f"Redis URL {shown!r} is not valid: {exc} (expected redis://host:port/db)"
        ) from exc
    except redis.RedisError as exc:
        raise BackendUnavailable(
            f"Redis at {shown} is not reachable: {_one_line(exc)}; start it, or pass a "
            "reachable --minigram-redis-url / MINIGRAM_REDIS_URL, or unset both to start a "
            "throwaway redis-server"
        ) from exc
    return RedisBackend(url=url, prefix=_new_prefix())


def _redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def _spawn_redis() -> RedisBackend:
    binary = find_redis_server()
    if binary is None:
        raise BackendUnavailable(f"no redis-server binary found on PATH: {REDIS_FIX}")
    tmpdir = Path(tempfile.mkdtemp(prefix="minigram-redis-", dir=TEMP_BASE))

    def make(port: int) -> ServerProcess:
        url = _redis_url(port)
        argv = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(tmpdir), "--daemonize", "no"]  # fmt: skip
        return ServerProcess(
            argv,
            log_path=tmpdir / "redis.log",
            ready=lambda: _redis_ping(url, 1.0),
            port=port,
            host="127.0.0.1",
            name="throwaway Redis",
            cwd=tmpdir,
        )

    try:
        server = _start_on_free_port(make, REDIS_FIX)
        return RedisBackend(url=_redis_url(server.port or 0), prefix=_new_prefix(),
                            tmpdir=tmpdir, _server=server)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def open_redis(url: str | None = None) -> RedisBackend:
    """Connect to ``url`` (own key prefix) or spawn a throwaway server; call ``close()``."""
    return _connect_given_redis(url) if url else _spawn_redis()


@contextmanager
def redis_backend(url: str | None = None) -> Iterator[RedisBackend]:
    backend = open_redis(url)
    try:
        yield backend
    finally:
        backend.close()

