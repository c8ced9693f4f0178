"""The database engine of each stage, units of work, and ``minigram db upgrade``.

* Stage 1: SQLite in its default (rollback journal) mode, a new connection for every unit of
  work (`NullPool`) and a busy timeout of 0, so two overlapping writes fail with "database is
  locked", as in the seed.
* Stage 1.5: SQLite in WAL mode with a 5 s busy timeout, a `QueuePool`, and write
  transactions that take the write lock up front (``BEGIN IMMEDIATE``) so that they queue on
  the busy timeout instead of failing on a stale snapshot.
* Stage 2: PostgreSQL on psycopg2 through a `QueuePool` with pre-ping.

The DB API drivers are synchronous: the endpoints run units of work in Starlette's
threadpool. Every statement, connect, commit and close is timed into ``Server-Timing: db``, and
every statement is counted in ``minigram_db_queries_total``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.schema import Table

from minigram import timing
from minigram.settings import Settings

logger = logging.getLogger("minigram")

MIGRATIONS = Path(__file__).parent / "migrations"


def engine_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2 (SQLAlchemy 2.1 defaults to psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_engine_for(settings: Settings) -> Engine:
    """The engine of ``settings.stage``, with statement timing hooked in."""
    url = engine_url(settings.database_url)
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": settings.sqlite_busy_timeout, "check_same_thread": False}
        if settings.pooled:
            engine = create_engine(
                url,
                poolclass=QueuePool,
                pool_size=settings.pool_size,
                max_overflow=settings.pool_size,
                pool_timeout=10,
                connect_args=connect_args,
            )
        else:
            engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        _hook_sqlite(engine, wal=settings.sqlite_wal)
    else:
        engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
            pool_timeout=10,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 3},
        )
    _hook_timing(engine)
    return engine


def _hook_sqlite(engine: Engine, *, wal: bool) -> None:
    # Take transaction control from pysqlite so that BEGIN is ours to choose: deferred on
    # stage 1 (the naive seed), IMMEDIATE for writes on stage 1.5.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if wal:
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("minigram_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write and wal else "BEGIN")


def _hook_timing(engine: Engine) -> None:
    # Imported here, not at the top: `minigram serve` imports this module before it sets
    # PROMETHEUS_MULTIPROC_DIR, and prometheus_client must not be loaded before that.
    from minigram import metrics

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        metrics.db_query(statement)
        conn.info.setdefault("minigram_t0", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        timing.add("db", time.perf_counter() - conn.info["minigram_t0"].pop())

    @event.listens_for(engine, "handle_error")
    def on_error(context: Any) -> None:
        conn = context.connection
        if conn is not None and conn.info.get("minigram_t0"):
            timing.add("db", time.perf_counter() - conn.info["minigram_t0"].pop())


class Database:
    """An engine plus units of work: ``with db.read() as conn`` / ``with db.write() as conn``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine_for(settings)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._unit(write=False) as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._unit(write=True) as conn:
            yield conn

    @contextmanager
    def _unit(self, *, write: bool) -> Iterator[Connection]:
        with timing.timed("db"):
            conn = self.engine.connect()
        try:
            if write:
                conn.execution_options(minigram_write=True)
            trans = conn.begin()
            try:
                yield conn
            except BaseException:
                with timing.timed("db"):
                    trans.rollback()
                raise
            with timing.timed("db"):
                trans.commit()
        finally:
            with timing.timed("db"):
                conn.close()

    def insert_ignore(self, table: Table) -> Insert:
        """``INSERT … ON CONFLICT DO NOTHING`` for this dialect (rowcount 0 when it existed)."""
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def upgrade(settings: Settings) -> None:
    """Bring the schema to the newest migration (idempotent), creating the PG database if needed.

    Alembic is configured in code from the migrations shipped inside the package, so this
    works from an installed wheel without any ``alembic.ini``.
    """
    from alembic import command
    from alembic.config import Config

    url = engine_url(settings.database_url)
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    else:
        _create_pg_database(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        if url.startswith("sqlite"):
            # journal_mode is a property of the file: set it per stage, once, here.
            mode = "WAL" if settings.sqlite_wal else "DELETE"
            with engine.connect() as conn:
                conn.exec_driver_sql(f"PRAGMA journal_mode={mode}")
    finally:
        engine.dispose()


def _create_pg_database(url: str) -> None:
    target = make_url(url)
    name = target.database
    if not name:
        return
    engine = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                quoted = conn.dialect.identifier_preparer.quote(name)
                try:
                    conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
                except sa_exc.ProgrammingError:  # created concurrently
                    pass
    finally:
        engine.dispose()
