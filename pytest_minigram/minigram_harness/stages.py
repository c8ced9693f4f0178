"""Bring Minigram up under a stage: backends, migrations, seed data, then the server."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_minigram.minigram_harness.backends import BackendUnavailable, postgres, redis_backend
from pytest_minigram.redact import redact_url
from pytest_minigram.server import ServerProcess, ServerStartError, free_port, port_in_use

SeedSizes = Callable[[str], dict[str, int]]
PORT_ATTEMPTS = 3
HEAD = "head"  # the code under test: this checkout
BASELINE = "baseline"  # --minigram-duet: another checkout, measured side by side


@dataclass
class Stack:
    """A running Minigram (one or more server processes on the same data) and its backends.

    Several processes serve the same database and media directory, each on its own port;
    ``--minigram-rounds`` sends each round of a perf test to the next one. The first is the
    one functional tests and ``minigram_server.url`` use.
    """

    stage: str
    url: str
    log_path: Path
    seed: dict[str, int]
    backends: dict[str, str] = field(default_factory=dict)
    server: ServerProcess | None = None
    urls: list[str] = field(default_factory=list)
    servers: list[ServerProcess] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return all(s.alive for s in self.servers or ([self.server] if self.server else []))

    def describe(self) -> dict[str, Any]:
        return {"stage": self.stage, "url": self.url, "log": str(self.log_path),
                "seed": self.seed, "backends": self.backends,
                "pid": self.server.pid if self.server is not None else None,
                "urls": list(self.urls or [self.url]),
                "pids": [s.pid for s in self.servers]}


def minigram_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "minigram", *args]


def _run(argv: list[str], env: dict[str, str], log: Path, what: str, timeout: float,
         cwd: Path | None = None) -> None:
    import subprocess

    with log.open("ab") as out:
        proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False, cwd=cwd)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{what} failed with exit code {proc.returncode}:\n{tail}")


class StagePool:
    """Starts one server per stage on first use and stops everything on close()."""

    def __init__(self, workdir: Path, *, pg_url: str | None, redis_url: str | None,
                 seed_sizes: SeedSizes, startup_timeout: float = 120.0,
                 instances: int = 1, baseline_code: Path | None = None,
                 host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host  # where the servers listen, and the host of their URLs
        self.instances = instances
        self.baseline_code = baseline_code
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.seed_sizes = seed_sizes
        self.startup_timeout = startup_timeout
        self._stacks: dict[tuple[str, str], Stack] = {}
        self._failures: dict[tuple[str, str], BaseException] = {}
        self._exit = contextlib.ExitStack()
        self._backends: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ports: set[int] = set()  # every port handed to a server of this pool

    def get(self, stage: str, side: str = HEAD) -> Stack:
        """The stage's stack; ``side="baseline"`` is the one run from ``baseline_code``."""
        if side == BASELINE and self.baseline_code is None:
            raise ValueError("this pool has no baseline code")
        key = (stage, side)
        with self._lock:
            stack = self._stacks.get(key)
            if stack is not None and not stack.alive:
                # A server died (a test saw that); later tests get fresh ones.
                for server in stack.servers:
                    server.stop()
                del self._stacks[key]
                stack = None
            if stack is None:
                if key in self._failures:
                    raise self._failures[key]
                try:
                    stack = self._start(stage, side)
                except BaseException as exc:
                    self._failures[key] = exc
                    raise
                self._stacks[key] = stack
            return stack

    def running(self, side: str = HEAD) -> list[Stack]:
        return [stack for (_, s), stack in self._stacks.items() if s == side]

    def _stage2_backends(self, side: str) -> dict[str, Any]:
        """A database and a Redis key prefix per side: the baseline's code is another
        version of the app, with its own schema and data."""
        if side not in self._backends:
            pg = self._exit.enter_context(postgres(url=self.pg_url))
            rd = self._exit.enter_context(redis_backend(url=self.redis_url))
            self._backends[side] = {"pg": pg, "redis": rd}
        return self._backends[side]

    def _start(self, stage: str, side: str) -> Stack:
        data_dir = self.workdir / (f"stage-{stage}" + ("" if side == HEAD else f"-{side}"))
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir / "server.log"
        env = dict(os.environ)
        # MINIGRAM_FAULTS (fault injection) is a property of the code under test: the
        # baseline never gets it, so a fault injected into this tree is a regression to find.
        keep = ("MINIGRAM_BCRYPT_ROUNDS", "MINIGRAM_WORKERS") + (
            ("MINIGRAM_FAULTS",) if side == HEAD else ())
        for key in [k for k in env if k.startswith("MINIGRAM_")]:
            if key not in keep:
                del env[key]
        env.update(MINIGRAM_STAGE=stage, MINIGRAM_DATA_DIR=str(data_dir),
                   MINIGRAM_MEDIA_DIR=str(data_dir / "media"))
        cwd: Path | None = None
        if side == BASELINE and self.baseline_code is not None:
            # `python -m minigram` from that tree: its directory goes first on sys.path
            cwd = self.baseline_code
            env["PYTHONPATH"] = os.pathsep.join(
                [str(cwd), *filter(None, [env.get("PYTHONPATH")])])
        backends: dict[str, str] = {"database": f"sqlite:///{data_dir / 'minigram.db'}"}
        if stage == "2":
            b = self._stage2_backends(side)
            env.update(MINIGRAM_DATABASE_URL=b["pg"].url, MINIGRAM_REDIS_URL=b["redis"].url,
                       MINIGRAM_REDIS_PREFIX=b["redis"].prefix)
            backends = {"database": redact_url(b["pg"].url), "cache": redact_url(b["redis"].url),
                        "postgres": "own" if b["pg"].owned else "given",
                        "redis": "own" if b["redis"].owned else "given"}
        if cwd is not None:
            backends["code"] = str(cwd)
        seed = self.seed_sizes(stage)
        _run(minigram_command("db", "upgrade"), env, log, "minigram db upgrade",
             self.startup_timeout, cwd)
        if seed.get("users", 0) or seed.get("photos", 0):
            _run(minigram_command("seed", "--users", str(seed.get("users", 0)),
                                  "--photos", str(seed.get("photos", 0))),
                 env, log, "minigram seed", self.startup_timeout, cwd)
        label = f"minigram stage {stage}" + ("" if side == HEAD else f" ({side})")
        names = [label + (f" #{i}" if i else "") for i in range(self.instances)]
        logs = [log if i == 0 else data_dir / f"server-{i}.log" for i in range(self.instances)]
        # the processes start side by side: with --minigram-rounds there can be a dozen
        launched = [self._launch(stage, env, logs[i], names[i], cwd)
                    for i in range(self.instances)]
        started = [self._serve(stage, env, logs[i], names[i], cwd, launched[i])
                   for i in range(self.instances)]
        servers = [server for server, _ in started]
        urls = [url for _, url in started]
        return Stack(stage=stage, url=urls[0], log_path=log, seed=seed, backends=backends,
                     server=servers[0], urls=urls, servers=servers)

    def _launch(self, stage: str, env: dict[str, str], log: Path, name: str,
                cwd: Path | None) -> tuple[ServerProcess, str]:
        # free_port() only says the port was free a moment ago; another process (another
        # session on this machine) may take it before the server binds: pick another, here
        # when it is taken before the spawn, in _serve when it is taken before the bind.
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port(self.host)
            while port in self._ports:  # not bound yet by the server launched just before
                port = free_port(self.host)
            self._ports.add(port)
            url = f"http://{self.host}:{port}"
            server = ServerProcess(
                argv=minigram_command("serve", "--stage", stage, "--host", self.host,
                                      "--port", str(port)),
                env=env, inherit_env=False, health_url=f"{url}/healthz", log_path=log,
                name=name, cwd=cwd, owns_port=True)
            self._exit.callback(server.stop)
            try:
                server.launch()
            except ServerStartError:
                if attempt == PORT_ATTEMPTS or not port_in_use(self.host, port):
                    raise
                continue
            return server, url
        raise AssertionError("unreachable")

    def _serve(self, stage: str, env: dict[str, str], log: Path, name: str,
               cwd: Path | None, launched: tuple[ServerProcess, str]) -> tuple[ServerProcess, str]:
        server, url = launched
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                server.wait_ready(timeout=self.startup_timeout)
            except ServerStartError:
                if attempt == PORT_ATTEMPTS or not port_in_use(self.host, server.port or 0):
                    raise
                server, url = self._launch(stage, env, log, name, cwd)
                continue
            return server, url
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._stacks.clear()
            self._exit.close()
            self._backends = {}




__all__ = ["BASELINE", "HEAD", "BackendUnavailable", "Stack", "StagePool", "minigram_command"]
