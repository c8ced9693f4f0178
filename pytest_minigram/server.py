"""Run a server process, wait until it is healthy, and stop its whole process tree.

Every child is started in its own session (so it has its own process group) and, on Linux,
with ``PR_SET_PDEATHSIG`` so that the kernel kills it when the *thread* that started it
dies: start servers from the main thread (pytest does), or they die when the thread ends.

PDEATHSIG reaches only that child: its own children (uvicorn's worker processes, say) would
outlive a SIGKILLed parent. So each server also gets a watchdog process, in a session of its
own, that kills the server's whole process group as soon as the process that started it is
gone, and exits by itself when the group is gone.

Live servers are kept in a module-level registry so that an ``atexit`` or signal handler
installed by the caller (the plugin decides; nothing is installed at import time) can call
``stop_all()``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil

__all__ = [
    "ServerDied",
    "ServerError",
    "ServerProcess",
    "ServerStartError",
    "free_port",
    "live_servers",
    "port_in_use",
    "stop_all",
]

_PR_SET_PDEATHSIG = 1
# Health checks go straight to the server, never through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """Base class for server supervision errors."""


class ServerStartError(ServerError):
    """The server exited, or did not become healthy, during start()."""


class ServerDied(ServerError):
    """The server was running and has exited."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now (the OS picks it; another process may still take it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True if something listens on host:port (bind test with SO_REUSEADDR, like servers do)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _pdeathsig_preexec(parent_pid: int) -> Callable[[], None]:
    libc: ctypes.CDLL | None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018  (present on Linux only)
    except (OSError, AttributeError):
        libc = None

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would kill us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


# Run as ``python -I -S -c WATCHDOG <parent pid> <process group>``: no site, no project code.
WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent, group = int(sys.argv[1]), int(sys.argv[2])
while True:
    if os.getppid() != parent:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
        break
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        break
    except PermissionError:
        pass
    time.sleep(0.1)
"""


def _start_watchdog(group: int) -> subprocess.Popen[bytes] | None:
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WATCHDOG, str(os.getpid()), str(group)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
    except OSError:
        return None  # best effort: PDEATHSIG and stop() still cover the common cases


def _stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    if watchdog is None:
        return
    if watchdog.poll() is None:
        watchdog.kill()
    try:
        watchdog.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (exit code {code})"
    return f"exited with code {code}"


def _read_tail(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _gone(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> None:
    # Not psutil.wait_procs: reparented grandchildren may linger as zombies until reaped.
    deadline = time.monotonic() + timeout
    while any(not _gone(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.02)


_registry_lock = threading.Lock()
_registry: dict[int, ServerProcess] = {}


def live_servers() -> list[ServerProcess]:
    with _registry_lock:
        return list(_registry.values())


def stop_all(timeout: float = 5.0) -> None:
    """Stop every ServerProcess started in this process, newest first. Safe to call twice."""
    for server in reversed(live_servers()):
        try:
            server.stop(timeout=timeout)
        except Exception:  # noqa: BLE001 - best effort at shutdown; keep stopping the rest
            pass


class ServerProcess:
    """Supervise one server process and its descendants.

    Readiness is ``health_url`` answering 200 and/or ``ready()`` returning True. ``port``
    (taken from ``health_url`` when not given) is checked to be free before spawning, so a
    server that would fail to bind does not get confused with whoever already listens there.
    With ``owns_port``, readiness also needs a process of this server's tree to listen on
    ``port``: another server that took the port between that check and the bind then fails
    the start instead of passing the health check for it. (Leave it off for a server whose
    port is published by someone else, such as ``docker run -p``.)
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        health_url: str | None = None,
        ready: Callable[[], bool] | None = None,
        port: int | None = None,
        host: str | None = None,
        name: str = "server",
        cwd: Path | None = None,
        user: str | int | None = None,
        group: str | int | None = None,
        stop_signal: int = signal.SIGTERM,
        pdeathsig: bool = True,
        owns_port: bool = False,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.inherit_env = inherit_env
        self.health_url = health_url
        self.ready = ready
        self.name = name
        self.cwd = cwd
        self.user = user
        self.group = group
        self.stop_signal = stop_signal
        self.pdeathsig = pdeathsig
        self.owns_port = owns_port
        parsed = urllib.parse.urlsplit(health_url) if health_url else None
        self.host = host or (parsed.hostname if parsed else None) or "127.0.0.1"
        self.port = port if port is not None else (parsed.port if parsed else None)
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopped_code: int | None = None

    # ------------------------------------------------------------------ state

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        if self._proc is None:
            return self._stopped_code
        return self._proc.poll()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return _read_tail(self.log_path, lines)

    def _failure(self, what: str, lines: int = 30) -> str:
        tail = self.log_tail(lines)
        shown = tail if tail.strip() else "(log is empty)"
        return f"{what}\n--- last {lines} lines of {self.log_path} ---\n{shown}"

    def check_alive(self) -> None:
        """Raise ServerDied (exit code and log tail) if the server has exited."""
        if self._proc is None:
            raise ServerDied(f"{self.name} is not running (it was never started or was stopped)")
        code = self._proc.poll()
        if code is not None:
            raise ServerDied(
                self._failure(f"{self.name} (pid {self._proc.pid}) {_describe_exit(code)}")
            )

    # ------------------------------------------------------------------ start

    def start(self, timeout: float = 30.0) -> ServerProcess:
        if self.alive:
            return self
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> ServerProcess:
        """Spawn the process without waiting for it to be ready (see :meth:`wait_ready`).

        Several servers can be launched first and waited for afterwards, so that their
        start-up overlaps. Launch from the thread that will outlive them: the parent-death
        signal fires when the launching *thread* exits.
        """
        if self.alive:
            return self
        if self.port is not None and port_in_use(self.host, self.port):
            raise ServerStartError(
                f"cannot start {self.name}: port {self.port} on {self.host} is already in use "
                "by another process; choose a free port (pytest_minigram.server.free_port())"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env} if self.inherit_env else dict(self.env)
        self._log = self.log_path.open("ab")
        self._stopped_code = None
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(os.getpid()) if self.pdeathsig else None,
                user=self.user,
                group=self.group,
                extra_groups=[] if self.user is not None else None,
            )
        except OSError as exc:
            self._close_log()
            raise ServerStartError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc
        with _registry_lock:
            _registry[id(self)] = self
        if self.pdeathsig:
            self._watchdog = _start_watchdog(self._proc.pid)
        return self

    def wait_ready(self, timeout: float = 30.0) -> ServerProcess:
        """Wait until the launched server answers; stop it and raise if it does not."""
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(timeout=5.0)
            raise
        return self

    def _probe(self) -> str | None:
        """None when ready, else a description of why not."""
        if self.health_url:
            try:
                with _opener.open(self.health_url, timeout=1.0) as resp:
                    if resp.status != 200:
                        return f"{self.health_url} answered {resp.status}"
            except urllib.error.HTTPError as exc:
                return f"{self.health_url} answered {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                return f"{self.health_url}: {reason}"
        if self.ready is not None:
            try:
                if not self.ready():
                    return "readiness check returned false"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                return f"readiness check failed: {exc}"
        return None

    def _listens(self) -> bool | None:
        """Whether a process of this server's tree listens on ``port``; None: cannot tell."""
        if not self.owns_port or self.port is None or self._proc is None:
            return None
        try:
            root = psutil.Process(self._proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        for proc in procs:
            try:
                conns = proc.net_connections(kind="tcp")
            except psutil.AccessDenied:
                return None
            except psutil.Error:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port
                   for c in conns):
                return True
        return False

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.02
        last = "no readiness check ran"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerStartError(
                    self._failure(f"{self.name} {_describe_exit(code)} during start-up")
                )
            reason = self._probe()
            if reason is None:
                # A healthy answer from a process that then exits, or from a port that no
                # process of ours listens on, came from somebody else (a port race).
                if self._proc.poll() is not None:
                    continue  # reported as an exit at the top of the loop
                if self._listens() is not False:
                    return
                reason = f"port {self.port} answers, but not from {self.name}'s processes"
            last = reason
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    self._failure(
                        f"{self.name} (pid {self._proc.pid}) did not become healthy within "
                        f"{timeout:g}s; last check: {last}"
                    )
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    # ------------------------------------------------------------------ stop

    def _descendants(self) -> list[psutil.Process]:
        assert self._proc is not None
        try:
            children: list[psutil.Process] = psutil.Process(self._proc.pid).children(
                recursive=True)
            return children
        except psutil.Error:
            return []

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0) -> int | None:
        """Graceful stop signal to the group, wait, then SIGKILL group and stragglers.

        Idempotent; returns the exit code.
        """
        proc = self._proc
        if proc is None:
            return self._stopped_code
        try:
            descendants = self._descendants()
            if proc.poll() is None:
                self._signal_group(self.stop_signal)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever is left of the group or the tree (also children that left the group).
            self._signal_group(signal.SIGKILL)
            for child in descendants:
                try:
                    child.kill()
                except psutil.Error:
                    pass
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _wait_gone(descendants, timeout=2.0)
        finally:
            _stop_watchdog(self._watchdog)
            self._watchdog = None
            self._stopped_code = proc.returncode
            self._proc = None
            self._close_log()
            with _registry_lock:
                _registry.pop(id(self), None)
        return self._stopped_code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 30.0, stop_timeout: float = 10.0) -> ServerProcess:
        self.stop(timeout=stop_timeout)
        return self.start(timeout=timeout)

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.alive else _describe_exit(self.returncode)
        return f"<ServerProcess {self.name} pid={self.pid} {state}>"


def process_tree_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    if pid is None:
        return None
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
