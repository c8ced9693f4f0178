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

from pytest_minigram.backends import BackendUnavailable, postgres, redis_backend
from pytest_minigram.server import ServerProcess, ServerStartError, free_port, port_in_use

SeedSizes = Callable[[str], dict[str, int]]
PORT_ATTEMPTS = 3


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


def process_tree_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def minigram_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "minigram", *args]


def _run(argv: list[str], env: dict[str, str], log: Path, what: str, timeout: float) -> None:
    import subprocess

    with log.open("ab") as out:
        proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{what} failed with exit code {proc.returncode}:\n{tail}")


class StagePool:
    """Starts one server per stage on first use and stops everything on close()."""

    def __init__(self, workdir: Path, *, pg_url: str | None, redis_url: str | None,
                 seed_sizes: SeedSizes, startup_timeout: float = 120.0,
                 instances: int = 1) -> None:
        self.workdir = workdir
        self.instances = instances
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.seed_sizes = seed_sizes
        self.startup_timeout = startup_timeout
        self._stacks: dict[str, Stack] = {}
        self._failures: dict[str, BaseException] = {}
        self._exit = contextlib.ExitStack()
        self._backends: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def get(self, stage: str) -> Stack:
        with self._lock:
            stack = self._stacks.get(stage)
            if stack is not None and not stack.alive:
                # A server died (a test saw that); later tests get fresh ones.
                for server in stack.servers:
                    server.stop()
                del self._stacks[stage]
                stack = None
            if stack is None:
                if stage in self._failures:
                    raise self._failures[stage]
                try:
                    stack = self._start(stage)
                except BaseException as exc:
                    self._failures[stage] = exc
                    raise
                self._stacks[stage] = stack
            return stack

    def running(self) -> list[Stack]:
        return list(self._stacks.values())

    def _stage2_backends(self) -> dict[str, Any]:
        if self._backends is None:
            pg = self._exit.enter_context(postgres(url=self.pg_url))
            rd = self._exit.enter_context(redis_backend(url=self.redis_url))
            self._backends = {"pg": pg, "redis": rd}
        return self._backends

    def _start(self, stage: str) -> Stack:
        data_dir = self.workdir / f"stage-{stage}"
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir / "server.log"
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("MINIGRAM_")]:
            if key not in ("MINIGRAM_BCRYPT_ROUNDS", "MINIGRAM_FAULTS", "MINIGRAM_WORKERS"):
                del env[key]
        env.update(MINIGRAM_STAGE=stage, MINIGRAM_DATA_DIR=str(data_dir),
                   MINIGRAM_MEDIA_DIR=str(data_dir / "media"))
        backends: dict[str, str] = {"database": f"sqlite:///{data_dir / 'minigram.db'}"}
        if stage == "2":
            b = self._stage2_backends()
            env.update(MINIGRAM_DATABASE_URL=b["pg"].url, MINIGRAM_REDIS_URL=b["redis"].url,
                       MINIGRAM_REDIS_PREFIX=b["redis"].prefix)
            backends = {"database": _redact(b["pg"].url), "cache": _redact(b["redis"].url),
                        "postgres": "own" if b["pg"].owned else "given",
                        "redis": "own" if b["redis"].owned else "given"}
        seed = self.seed_sizes(stage)
        _run(minigram_command("db", "upgrade"), env, log, "minigram db upgrade",
             self.startup_timeout)
        if seed.get("users", 0) or seed.get("photos", 0):
            _run(minigram_command("seed", "--users", str(seed.get("users", 0)),
                                  "--photos", str(seed.get("photos", 0))),
                 env, log, "minigram seed", self.startup_timeout)
        servers: list[ServerProcess] = []
        urls: list[str] = []
        for instance in range(self.instances):
            name = f"minigram stage {stage}" + (f" #{instance}" if instance else "")
            inst_log = log if instance == 0 else data_dir / f"server-{instance}.log"
            server, url = self._serve(stage, env, inst_log, name)
            servers.append(server)
            urls.append(url)
        return Stack(stage=stage, url=urls[0], log_path=log, seed=seed, backends=backends,
                     server=servers[0], urls=urls, servers=servers)

    def _serve(self, stage: str, env: dict[str, str], log: Path,
               name: str) -> tuple[ServerProcess, str]:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # free_port() only says the port was free a moment ago; another process (another
            # session on this machine) may take it before the server binds: pick another.
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = ServerProcess(
                argv=minigram_command("serve", "--stage", stage, "--host", "127.0.0.1",
                                      "--port", str(port)),
                env=env, inherit_env=False, health_url=f"{url}/healthz", log_path=log,
                name=name)
            self._exit.callback(server.stop)
            try:
                server.start(timeout=self.startup_timeout)
            except ServerStartError:
                if attempt == PORT_ATTEMPTS or not port_in_use("127.0.0.1", port):
                    raise
                continue
            return server, url
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._stacks.clear()
            self._exit.close()
            self._backends = None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return url


__all__ = ["BackendUnavailable", "Stack", "StagePool", "minigram_command"]
