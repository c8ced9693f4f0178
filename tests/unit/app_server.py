"""A real ``minigram serve`` in a subprocess, for the overload, consistency and fault tests.

Stage 2 takes the URLs of throwaway backends (``pytest_minigram.minigram_harness.backends``
with no URL): these tests stop and restart them, so they must never be the machine's shared
services.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from minigram import db
from minigram.seed import seed
from minigram.settings import Settings
from pytest_minigram.load import Result, run
from pytest_minigram.minigram_harness.stages import minigram_command
from pytest_minigram.server import ServerProcess, free_port


@dataclass
class AppServer:
    settings: Settings
    process: ServerProcess
    url: str

    def tree(self) -> list[psutil.Process]:
        assert self.process.pid is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def rss(self) -> int:
        """Resident memory of the server and all its processes, in bytes."""
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def connections(self, proc: psutil.Process) -> int:
        """Established client connections that ``proc`` holds on the server's port."""
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            return 0
        return sum(
            1
            for c in conns
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
        )

    @property
    def port(self) -> int:
        return self.settings.port

    def log_size(self) -> int:
        return self.process.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.process.log_path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def workers(self) -> list[psutil.Process]:
        """uvicorn's worker processes (spawned children; not the resource tracker)."""
        assert self.process.pid is not None
        found = []
        for proc in psutil.Process(self.process.pid).children():
            try:
                if "spawn_main" in " ".join(proc.cmdline()):
                    found.append(proc)
            except psutil.Error:  # a dead worker not reaped yet
                pass
        return found


@contextmanager
def app_server(
    directory: Path,
    stage: str,
    *,
    seed_users: int = 20,
    seed_photos: int = 60,
    serve_args: tuple[str, ...] = (),
    **overrides: Any,
) -> Iterator[AppServer]:
    """Migrate, seed, and serve ``stage`` from ``directory`` on a free port; stop at exit."""
    port = free_port()
    settings = Settings.for_stage(
        stage,
        data_dir=directory,
        bcrypt_rounds=overrides.pop("bcrypt_rounds", 4),
        port=port,
        **overrides,
    )
    db.upgrade(settings)
    if seed_users or seed_photos:
        seed(settings, seed_users, seed_photos, None, out=lambda line: None)
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(
        minigram_command("serve", *serve_args),
        env=settings.to_env(),
        health_url=f"{url}/healthz",
        log_path=directory / "server.log",
        name=f"minigram stage {stage}",
    )
    server.start(timeout=60)
    try:
        yield AppServer(settings, server, url)
    finally:
        server.stop()


REDIS_TEST_URL = os.environ.get("MINIGRAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_served = itertools.count()


def _empty_pg(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(db.engine_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE likes, follows, photos, tokens, users RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(name="serve_stage")
def serve_stage_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., AppServer]]:
    """``serve(stage, **settings) -> AppServer``: a real ``minigram serve`` of ``stage``, not
    seeded, stopped at the end. Stage 2 gets the session's PostgreSQL database, emptied, a
    Redis prefix of its own, and two workers unless told otherwise."""
    with ExitStack() as stack:

        def serve(stage: str, **overrides: Any) -> AppServer:
            n = next(_served)
            if stage == "2":
                url = request.getfixturevalue("app_pg_url")
                _empty_pg(url)
                prefix = request.getfixturevalue("app_redis_prefix")
                overrides = {"database_url": url, "redis_url": REDIS_TEST_URL,
                             "redis_prefix": f"{prefix}served-{n}:", "workers": 2, **overrides}
            overrides.setdefault("seed_users", 0)
            overrides.setdefault("seed_photos", 0)
            return stack.enter_context(app_server(tmp_path / f"served-{n}", stage, **overrides))

        yield serve


class BackgroundLoad:
    """``run()`` in a thread, so the test can break things while the load goes on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)

    def _run(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.result = run(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in join()
            self.error = exc

    def __enter__(self) -> BackgroundLoad:
        self.started_at = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=120)

    def join(self) -> Result:
        self._thread.join(timeout=120)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the load did not finish"
        return self.result


@dataclass
class Window:
    """What a fault did to the per-second series: when errors started and stopped."""

    fault_at: float  # seconds into the run
    first_error: float | None
    last_error: float | None
    recovered_at: float | None  # first second after the fault with no errors ever after

    @property
    def error_window(self) -> float:
        if self.first_error is None or self.last_error is None:
            return 0.0
        return self.last_error + 1 - self.first_error

    @property
    def recovery_time(self) -> float:
        if self.recovered_at is None:
            return math.inf
        return max(0.0, self.recovered_at - self.fault_at)

    def figures(self) -> dict[str, float]:
        return {"error_window_s": round(self.error_window, 2),
                "recovery_s": round(self.recovery_time, 2)}


def error_window(result: Result, fault_at: float, *, min_requests: int = 1) -> Window:
    """Errors after ``fault_at`` (seconds into the run), from the one-second rows.

    ``recovered_at`` is the start of the first second from which every later second answered
    at least ``min_requests`` requests and no errors.
    """
    rows = [r for r in result.timeseries if r["t"] + 1 > fault_at]
    bad = [r["t"] for r in rows if r["errors"]]
    recovered = None
    for i, row in enumerate(rows):
        tail = rows[i:]
        # the last row is a partial second: it counts for errors, not for traffic
        if all(r["errors"] == 0 for r in tail) and all(
            r["requests"] >= min_requests for r in tail[:-1]
        ):
            recovered = float(row["t"])
            break
    return Window(
        fault_at=fault_at,
        first_error=float(bad[0]) if bad else None,
        last_error=float(bad[-1]) if bad else None,
        recovered_at=recovered,
    )


def series(result: Result) -> str:
    """The run second by second, for failure messages."""
    return " ".join(f"{r['t']}:{r['requests']}/{r['errors']}" for r in result.timeseries)


def statuses(result: Result) -> Mapping[str, int]:
    return {kind: int(info["count"]) for kind, info in result.errors.items()}
