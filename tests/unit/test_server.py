from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pytest_minigram import server as server_mod
from pytest_minigram.server import (
    ServerDied,
    ServerProcess,
    ServerStartError,
    free_port,
    live_servers,
    port_in_use,
    stop_all,
)

SERVER = textwrap.dedent(
    """
    import http.server, os, signal, subprocess, sys, time

    port, mode = int(sys.argv[1]), sys.argv[2]
    print(f"starting mode={mode} pid={os.getpid()}", flush=True)
    if mode == "crash":
        print("boom: cannot open database file", flush=True)
        sys.exit(3)
    if mode == "children":
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
        kids = [subprocess.Popen(sleeper) for _ in range(2)]
        # one grandchild that leaves the process group, like a daemonizing helper
        kids.append(subprocess.Popen(sleeper, start_new_session=True))
        with open(sys.argv[3], "w") as fh:
            fh.write(" ".join(str(k.pid) for k in kids))
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    status = 503 if mode == "unhealthy" else 200

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/die":
                os._exit(7)
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    print("listening", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)

SUPERVISOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pytest_minigram.server import ServerProcess

    script, port, log, pidfile = sys.argv[1:5]
    srv = ServerProcess([sys.executable, script, port, "ok"], log_path=Path(log),
                        health_url=f"http://127.0.0.1:{port}/healthz", name="inner")
    srv.start(timeout=20)
    Path(pidfile).write_text(str(srv.pid))
    time.sleep(600)
    """
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    yield
    stop_all(timeout=2.0)
    me = psutil.Process()
    left = [p for p in me.children(recursive=True) if p.is_running()]
    for p in left:
        p.kill()
    assert not left, f"processes left behind: {left}"


def make(script: Path, tmp_path: Path, mode: str = "ok", *extra: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        [sys.executable, str(script), str(port), mode, *extra],
        log_path=tmp_path / "logs" / f"{mode}.log",
        health_url=f"http://127.0.0.1:{port}/healthz",
        name=f"tiny-{mode}",
    )


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if running(p)]
        time.sleep(0.05)
    return alive


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_in_use("127.0.0.1", port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert port_in_use("127.0.0.1", port)


def test_start_health_stop(script: Path, tmp_path: Path) -> None:
    srv = make(script, tmp_path)
    assert not srv.alive and srv.pid is None and srv.returncode is None
    srv.start(timeout=20)
    assert srv.alive and srv.pid is not None
    assert srv in live_servers()
    srv.check_alive()
    assert os.getpgid(srv.pid) == srv.pid  # its own process group
    assert "listening" in srv.log_tail()
    code = srv.stop()
    assert code == -signal.SIGTERM and srv.returncode == -signal.SIGTERM
    assert not srv.alive and srv not in live_servers()
    assert srv.stop() == code  # idempotent


def test_context_manager_and_restart(script: Path, tmp_path: Path) -> None:
    with make(script, tmp_path) as srv:
        first = srv.pid
        srv.restart(timeout=20)
        assert srv.alive and srv.pid != first
        assert srv.log_tail(lines=1000).count("listening") == 2  # log is appended to
    assert not srv.alive


def test_crash_during_start_reports_exit_code_and_log(script: Path, tmp_path: Path) -> None:
    srv = make(script, tmp_path, "crash")
    with pytest.raises(ServerStartError) as info:
        srv.start(timeout=20)
    message = str(info.value)
    assert "tiny-crash exited with code 3 during start-up" in message
    assert "boom: cannot open database file" in message
    assert str(srv.log_path) in message
    assert srv.returncode == 3 and not srv.alive


def test_unhealthy_server_times_out_and_is_stopped(script: Path, tmp_path: Path) -> None:
    srv = make(script, tmp_path, "unhealthy")
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        srv.start(timeout=1.5)
    assert time.monotonic() - started < 8
    message = str(info.value)
    assert "did not become healthy within 1.5s" in message
    assert "answered 503" in message
    assert "listening" in message  # log tail
    assert not srv.alive


def test_missing_executable_is_a_start_error(tmp_path: Path) -> None:
    srv = ServerProcess(["/nonexistent/minigram-serve"], log_path=tmp_path / "x.log", name="x")
    with pytest.raises(ServerStartError, match="cannot start x .*nonexistent"):
        srv.start()


def test_crash_after_start_is_detected_with_log_tail(script: Path, tmp_path: Path) -> None:
    srv = make(script, tmp_path)
    srv.start(timeout=20)
    assert srv.health_url
    with pytest.raises(OSError):
        # the handler exits the process: the connection is dropped
        import urllib.request

        urllib.request.urlopen(srv.health_url.replace("/healthz", "/die"), timeout=5)
    deadline = time.monotonic() + 5
    while srv.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(ServerDied) as info:
        srv.check_alive()
    message = str(info.value)
    assert "exited with code 7" in message and "listening" in message
    assert srv.returncode == 7
    srv.stop()
    with pytest.raises(ServerDied, match="not running"):
        srv.check_alive()


def test_stop_kills_grandchildren_even_outside_the_group(script: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "kids"
    srv = make(script, tmp_path, "children", str(pidfile))
    srv.start(timeout=20)
    kids = [int(p) for p in pidfile.read_text().split()]
    assert len(kids) == 3 and all(psutil.pid_exists(p) for p in kids)
    srv.stop(timeout=5)
    assert wait_gone(kids) == []


def test_stop_escalates_to_sigkill(script: Path, tmp_path: Path) -> None:
    srv = make(script, tmp_path, "stubborn")
    srv.start(timeout=20)
    started = time.monotonic()
    assert srv.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_custom_stop_signal(script: Path, tmp_path: Path) -> None:
    srv = make(script, tmp_path)
    srv.stop_signal = signal.SIGINT
    srv.start(timeout=20)
    assert srv.stop() in (-signal.SIGINT, 1)  # KeyboardInterrupt in the child exits with 1


def test_port_in_use_is_a_clear_error_before_spawning(script: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        srv = ServerProcess(
            [sys.executable, str(script), str(port), "ok"],
            log_path=tmp_path / "busy.log",
            health_url=f"http://127.0.0.1:{port}/healthz",
            name="busy",
        )
        with pytest.raises(ServerStartError) as info:
            srv.start(timeout=5)
    assert f"port {port} on 127.0.0.1 is already in use" in str(info.value)
    assert srv.pid is None


def test_owns_port_does_not_take_another_servers_health_answer(
        script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race in which another server binds the port after the free check: its health
    answer must not make ours look ready."""
    other = make(script, tmp_path, "ok").start(timeout=20)
    monkeypatch.setattr(server_mod, "port_in_use", lambda host, port: False)
    srv = ServerProcess([sys.executable, str(script), str(other.port), "ok"],
                        log_path=tmp_path / "late.log", health_url=other.health_url,
                        name="late", owns_port=True)
    with pytest.raises(ServerStartError) as info:
        srv.start(timeout=20)
    assert "late exited with code 1 during start-up" in str(info.value)
    assert "Address already in use" in str(info.value)
    assert other.alive


def test_bind_failure_without_known_port_shows_the_log(script: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        srv = ServerProcess(
            [sys.executable, str(script), str(port), "ok"],
            log_path=tmp_path / "busy.log",
            ready=lambda: False,
            name="busy",
        )
        with pytest.raises(ServerStartError) as info:
            srv.start(timeout=10)
    message = str(info.value)
    assert "busy exited with code 1 during start-up" in message
    assert "Address already in use" in message


def test_ready_callable_is_used(script: Path, tmp_path: Path) -> None:
    port = free_port()
    calls: list[int] = []

    def ready() -> bool:
        calls.append(1)
        return len(calls) >= 3

    srv = ServerProcess(
        [sys.executable, str(script), str(port), "ok"],
        log_path=tmp_path / "r.log",
        ready=ready,
        port=port,
        name="r",
    )
    with srv:
        assert len(calls) == 3


def test_env_is_passed(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    code = (
        f"import os, time; open({str(out)!r}, 'w').write(os.environ['MINIGRAM_X']); time.sleep(60)"
    )
    srv = ServerProcess(
        [sys.executable, "-c", code],
        env={"MINIGRAM_X": "42"},
        log_path=tmp_path / "e.log",
        ready=out.exists,
        name="e",
    )
    with srv:
        assert out.read_text() == "42"


def test_stop_all_stops_every_live_server(script: Path, tmp_path: Path) -> None:
    a = make(script, tmp_path).start(timeout=20)
    b = make(script, tmp_path, "children", str(tmp_path / "kids")).start(timeout=20)
    assert {id(a), id(b)} <= {id(s) for s in live_servers()}
    stop_all()
    assert not a.alive and not b.alive and live_servers() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_pdeathsig_kills_server_when_its_parent_is_killed(script: Path, tmp_path: Path) -> None:
    sup = tmp_path / "supervisor.py"
    sup.write_text(SUPERVISOR)
    pidfile = tmp_path / "inner.pid"
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, sup, script, str(port), tmp_path / "inner.log", pidfile],
        cwd=Path(server_mod.__file__).parents[1],
    )
    try:
        deadline = time.monotonic() + 20
        while not pidfile.exists() or not pidfile.read_text():
            assert parent.poll() is None, "supervisor exited early"
            assert time.monotonic() < deadline, "inner server never started"
            time.sleep(0.05)
        inner = int(pidfile.read_text())
        assert psutil.pid_exists(inner)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=5)
        # The inner server is in another session and was not signalled by anyone else.
        assert wait_gone([inner]) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
