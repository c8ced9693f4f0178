"""The plugin under faults: bad backends, busy ports, crashes and signals leave nothing behind.

Every session here is a real ``python -m pytest`` subprocess with real Minigram servers. A
watcher thread records every descendant of that pytest process while it runs; afterwards none
of them may be alive, and no process on the machine may carry the session's unique temp dir
(``TMPDIR``, hence ``MINIGRAM_DATA_DIR``) in its command line, environment or working dir.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process hygiene is Linux-only")

SEED = ("--minigram-seed-users=20", "--minigram-seed-photos=20")
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/x"
GIVEN_REDIS = "redis://127.0.0.1:6379/0"
SERVER_KINDS = {"minigram serve": "minigram", "postgres -D": "postgres",
                "redis-server": "redis-server"}


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _carries(proc: psutil.Process, marker: str) -> bool:
    """Whether a live process has the marker in its command line, working dir or environment."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if marker in " ".join(proc.cmdline()) or proc.cwd().startswith(marker):
            return True
        return any(marker in value for value in proc.environ().values())
    except psutil.Error:
        return False


class Run:
    """A pytest session in a subprocess, with every process it ever started on record."""

    def __init__(self, cwd: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.cwd = cwd
        self.marker = env["TMPDIR"]
        self.out_path = cwd / f"out-{time.monotonic_ns()}.txt"
        self.seen: dict[int, tuple[float, str]] = {}
        with self.out_path.open("wb") as out:
            # Its own process group, as a terminal's foreground job, with SIGINT at its
            # default (a background shell may have ignored it), so Ctrl-C can be simulated.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=0,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while self.proc.poll() is None:
            try:
                children = root.children(recursive=True)
            except psutil.Error:
                return
            for child in children:
                # Read again each time: right after fork, a child still shows its parent's
                # command line.
                cmd = _cmdline(child)
                try:
                    created = child.create_time()
                except psutil.Error:
                    continue
                if cmd or child.pid not in self.seen:
                    self.seen[child.pid] = (created, cmd)
            time.sleep(0.05)

    def kinds(self) -> set[str]:
        """Which kinds of server the session started (judged by command line)."""
        return {kind for _, cmd in self.seen.values() for text, kind in SERVER_KINDS.items()
                if text in cmd}

    def wait_for(self, what: Callable[[], bool], timeout: float, label: str) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if self.proc.poll() is not None:
                pytest.fail(f"the session ended before {label}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"timeout waiting for {label}:\n{self.output()}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the session hung for {timeout:g}s:\n{self.output()}")
        self.ended = time.monotonic()
        self._watcher.join(timeout=5)
        return rc

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pid, (created, _) in list(self.seen.items()):
            if _alive(pid, created):
                psutil.Process(pid).kill()

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def leftovers(self, grace: float = 3.0) -> list[str]:
        """Processes of this session still alive after it ended (a short grace for SIGKILLs)."""
        deadline = time.monotonic() + grace
        while True:
            left = {pid: cmd for pid, (created, cmd) in self.seen.items()
                    if _alive(pid, created)}
            left.update({p.pid: _cmdline(p) for p in psutil.process_iter()
                         if p.pid != os.getpid() and _carries(p, self.marker)})
            if not left or time.monotonic() > deadline:
                return [f"{pid}: {cmd}" for pid, cmd in sorted(left.items())]
            time.sleep(0.1)


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    """A unique temp dir for the session; world-traversable so 'postgres' can use it."""
    path = Path(tempfile.mkdtemp(prefix="minigram-hygiene-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(pytester: pytest.Pytester, marker_dir: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(*args: str, path: str | None = None, **env_extra: str) -> Run:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MINIGRAM_", "PYTEST_", "PG"))}
        env.update(TMPDIR=str(marker_dir), **env_extra)
        if path is not None:
            env["PATH"] = path
        run = Run(pytester.path, args, env)
        runs.append(run)
        return run

    yield start
    for run in runs:  # a failed assertion must not leave a session behind
        if run.proc.poll() is None:
            run.kill()


def _assert_clean(run: Run, *kinds: str) -> None:
    assert set(kinds) <= run.kinds(), (
        f"expected the session to start {kinds}, it started {run.kinds()}:\n{run.output()}")
    left = run.leftovers()
    assert not left, "processes survived the session:\n" + "\n".join(left)


def _junit(path: Path) -> dict[str, ET.Element]:
    return {c.get("name", ""): c for c in ET.parse(path).getroot().iter("testcase")}


# ------------------------------------------------------------------------- bad backends

STAGE2_TEST = """
def test_stage2_api(minigram_client):
    minigram_client.register("stage2_user", "password123")
"""


def test_unreachable_pg_url_skips_with_the_fix(pytester: pytest.Pytester,
                                               start: Callable[..., Run]) -> None:
    pytester.makepyfile(test_stage2=STAGE2_TEST)
    xml = pytester.path / "junit.xml"
    run = start("--stage=2", f"--minigram-pg-url={UNREACHABLE_PG}",
                f"--minigram-redis-url={GIVEN_REDIS}", f"--junitxml={xml}", *SEED)
    assert run.finish() == 0, run.output()
    out = run.output()
    assert "1 skipped" in out, out
    (case,) = _junit(xml).values()
    reason = case.find("skipped").get("message", "")  # type: ignore[union-attr]
    assert "stage 2 needs PostgreSQL and Redis" in reason
    assert f"PostgreSQL at {UNREACHABLE_PG} is not reachable" in reason
    assert "--minigram-pg-url / MINIGRAM_PG_URL" in reason
    assert "throwaway server" in reason
    _assert_clean(run)
    assert not run.kinds()  # nothing was started for a backend that is not there


def test_unreachable_pg_url_fails_with_require_backends(pytester: pytest.Pytester,
                                                        start: Callable[..., Run]) -> None:
    pytester.makepyfile(test_stage2=STAGE2_TEST)
    run = start("--stage=2", f"--minigram-pg-url={UNREACHABLE_PG}",
                f"--minigram-redis-url={GIVEN_REDIS}", "--minigram-require-backends", *SEED)
    rc = run.finish()
    out = run.output()
    assert rc == 1, out
    assert "1 error" in out, out
    assert f"PostgreSQL at {UNREACHABLE_PG} is not reachable" in out
    assert "(--minigram-require-backends is set)" in out
    _assert_clean(run)


def test_missing_postgres_binaries_skip_and_leave_nothing(
        pytester: pytest.Pytester, start: Callable[..., Run], tmp_path: Path) -> None:
    pytester.makepyfile(test_stage2=STAGE2_TEST)
    empty = tmp_path / "no-postgres-here"
    empty.mkdir()
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if d and not (Path(d) / "initdb").exists())
    assert shutil.which("initdb", path=path) is None
    xml = pytester.path / "junit.xml"
    run = start("--stage=2", f"--junitxml={xml}", *SEED, path=path,
                MINIGRAM_PG_BINDIR=str(empty))
    assert run.finish() == 0, run.output()
    (case,) = _junit(xml).values()
    reason = case.find("skipped").get("message", "")  # type: ignore[union-attr]
    assert "no PostgreSQL server binaries found" in reason
    assert f"MINIGRAM_PG_BINDIR={empty}" in reason
    assert "apt-get install postgresql" in reason
    assert "--minigram-pg-url / set MINIGRAM_PG_URL" in reason
    _assert_clean(run)
    assert not run.kinds()


# ------------------------------------------------------------------------- busy ports

BUSY_PORT_CONFTEST = """
import socket

import pytest
from pytest_minigram.minigram_harness import backends, stages

BUSY = socket.socket()
BUSY.bind(("127.0.0.1", 0))
BUSY.listen()
PORT = BUSY.getsockname()[1]
PICKS = {}


def racy(module):
    real = module.free_port
    picks = PICKS.setdefault(module.__name__, [])

    def free_port(host="127.0.0.1"):
        # The first pick is a port another process took meanwhile (as another session might).
        picks.append(PORT if not picks else real(host))
        return picks[-1]

    module.free_port = free_port


racy(stages)
racy(backends)


@pytest.fixture
def busy_port():
    return PORT


@pytest.fixture
def picks():
    return PICKS
"""

BUSY_PORT_TEST = """
import os
import urllib.parse
from pathlib import Path


def test_servers_got_other_ports(minigram_server, minigram_client, busy_port, picks):
    urls = [minigram_server.url, minigram_server.backends["database"],
            minigram_server.backends["cache"]]
    ports = [urllib.parse.urlsplit(u).port for u in urls]
    assert busy_port not in ports
    # The busy port was tried first, for Minigram, then PostgreSQL (and Redis after it).
    assert picks["pytest_minigram.minigram_harness.stages"][0] == busy_port
    assert picks["pytest_minigram.minigram_harness.backends"][0] == busy_port
    assert len(picks["pytest_minigram.minigram_harness.backends"]) == 3
    minigram_client.register("port_user", "password123")
    Path(f"ports-{os.getpid()}.txt").write_text(" ".join(map(str, ports)))
"""


def test_busy_ports_and_two_sessions_at_once(pytester: pytest.Pytester,
                                             start: Callable[..., Run]) -> None:
    """A port taken between free_port() and the bind is replaced; sessions do not collide."""
    pytester.makeconftest(BUSY_PORT_CONFTEST)
    pytester.makepyfile(test_ports=BUSY_PORT_TEST)
    runs = [start("--stage=2", *SEED, MINIGRAM_WORKERS="1") for _ in range(2)]
    for run in runs:
        assert run.finish(timeout=90) == 0, run.output()
        assert "1 passed" in run.output()
    first, second = (set(f.read_text().split()) for f in pytester.path.glob("ports-*.txt"))
    assert len(first) == len(second) == 3
    assert not first & second  # Minigram, PostgreSQL and Redis each on a port of its own
    for run in runs:
        _assert_clean(run, "minigram", "postgres", "redis-server")


# ------------------------------------------------------------------------- verdicts

PERF_TESTS = """
import os
from pathlib import Path

import pytest


@pytest.fixture
def broken_fixture(minigram_server):
    raise RuntimeError("fixture broke after the server started")


@pytest.mark.perf
def test_perf_pass(minigram_load):
    result = minigram_load("realistic", users=2, duration="1s")
    result.check("error_rate < 50%")


@pytest.mark.perf
def test_perf_fail(minigram_load):
    result = minigram_load("realistic", users=2, duration="1s")
    result.check("throughput > 1000000/s")


def test_broken_fixture(broken_fixture):
    pass


@pytest.mark.perf
def test_perf_long(minigram_load, worker_id):
    Path(f"started-{worker_id}").write_text(str(os.getpid()))
    minigram_load("realistic", users=2, duration="20s")


@pytest.mark.perf
def test_perf_xdist(minigram_load, worker_id):
    Path(f"started-{worker_id}").write_text(str(os.getpid()))
    minigram_load("realistic", users=2, duration="3s")
"""


def test_passing_run_on_throwaway_backends_leaves_nothing(
        pytester: pytest.Pytester, start: Callable[..., Run]) -> None:
    pytester.makepyfile(test_perf=PERF_TESTS)
    run = start("--stage=2", "-k", "test_perf_pass", "--minigram-require-backends", *SEED,
                MINIGRAM_WORKERS="2")
    rc = run.finish(timeout=90)
    assert rc == 0, run.output()
    assert "1 passed" in run.output()
    _assert_clean(run, "minigram", "postgres", "redis-server")


def test_failing_perf_run_and_broken_fixture_leave_nothing(
        pytester: pytest.Pytester, start: Callable[..., Run]) -> None:
    pytester.makepyfile(test_perf=PERF_TESTS)
    run = start("--stage=1", "-k", "test_perf_fail or test_broken_fixture", *SEED)
    rc = run.finish()
    out = run.output()
    assert rc == 1, out
    assert "1 failed" in out and "1 error" in out, out
    assert "throughput > 1000000/s" in out
    assert "fixture broke after the server started" in out
    _assert_clean(run, "minigram")


@pytest.mark.parametrize(("sig", "stage"), [
    pytest.param(signal.SIGINT, "1", id="SIGINT-stage1"),
    pytest.param(signal.SIGTERM, "2", id="SIGTERM-stage2"),
])
def test_signal_during_perf_run_leaves_nothing(pytester: pytest.Pytester,
                                               start: Callable[..., Run],
                                               sig: signal.Signals, stage: str) -> None:
    pytester.makepyfile(test_perf=PERF_TESTS)
    workers = {"MINIGRAM_WORKERS": "2"} if stage == "2" else {}
    run = start(f"--stage={stage}", "-k", "test_perf_long", *SEED, **workers)
    started = pytester.path / "started-master"
    run.wait_for(started.exists, 60, "the perf test to start its load")
    time.sleep(0.5)
    if sig == signal.SIGINT:
        os.killpg(run.proc.pid, sig)  # Ctrl-C: the whole foreground group
    else:
        run.proc.send_signal(sig)  # kill(1), as a CI runner's timeout does
    signalled = time.monotonic()
    rc = run.finish(timeout=30)
    out = run.output()
    assert rc == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert "passed" not in out.splitlines()[-1]
    assert run.ended - signalled < 20  # torn down promptly, no hang
    _assert_clean(run, "minigram", *(("postgres", "redis-server") if stage == "2" else ()))


def test_killed_pytest_leaves_nothing(pytester: pytest.Pytester,
                                      start: Callable[..., Run]) -> None:
    """SIGKILL runs no Python at all: PR_SET_PDEATHSIG has to take the servers down."""
    pytester.makepyfile(test_perf=PERF_TESTS)
    run = start("--stage=2", "-k", "test_perf_long", *SEED, MINIGRAM_WORKERS="2")
    run.wait_for((pytester.path / "started-master").exists, 60, "the load to start")
    time.sleep(0.5)
    run.proc.kill()
    assert run.finish(timeout=10) == -signal.SIGKILL
    _assert_clean(run, "minigram", "postgres", "redis-server")


@pytest.mark.parametrize("victim", ["gw0", "gw1"])
def test_killed_xdist_worker_fails_the_perf_test(pytester: pytest.Pytester,
                                                 start: Callable[..., Run],
                                                 victim: str) -> None:
    """Whichever worker dies, the other's load fails at once and the test is failed."""
    pytester.makepyfile(test_perf=PERF_TESTS)
    run = start("--stage=1", "-n", "2", "-k", "test_perf_xdist", *SEED)
    files = {w: pytester.path / f"started-{w}" for w in ("gw0", "gw1")}

    def both_started() -> bool:
        return all(f.exists() for f in files.values())

    run.wait_for(both_started, 90, "both workers to start the perf test")
    time.sleep(1.5)  # both met at the coordinator and are loading
    os.kill(int(files[victim].read_text()), signal.SIGKILL)
    killed = time.monotonic()
    rc = run.finish(timeout=60)
    out = run.output()
    assert rc == 1, out
    assert f"worker '{victim}' crashed while running 'test_perf.py::test_perf_xdist[stage1]'" in out
    # the other worker's load failed too, naming the one that went: nothing was merged
    assert f"worker {victim}" in out and "FAILED" in out
    assert " passed" not in out.splitlines()[-1]
    assert run.ended - killed < 30  # no wait for the barrier or exchange timeouts (60 s+)
    _assert_clean(run, "minigram")


# ------------------------------------------------------------------------- server crash

CRASH_TESTS = """
import os
import signal
import threading
from pathlib import Path

import psutil
import pytest


def listener(port):
    (pid,) = {c.pid for c in psutil.net_connections("tcp")
              if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return pid


@pytest.mark.perf
def test_server_dies_under_load(minigram_server, minigram_load):
    pid = listener(int(minigram_server.url.rsplit(":", 1)[1]))
    assert pid == minigram_server.pid
    Path("first.pid").write_text(str(pid))
    threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
    minigram_load("realistic", users=2, duration="2s")


def test_later_test_gets_a_fresh_server(minigram_server, minigram_client):
    assert minigram_server.pid != int(Path("first.pid").read_text())
    assert minigram_server.alive()
    minigram_client.register("after_crash", "password123")
"""


def test_server_crash_fails_that_test_and_the_next_gets_a_fresh_server(
        pytester: pytest.Pytester, start: Callable[..., Run]) -> None:
    pytester.makepyfile(test_crash=CRASH_TESTS)
    run = start("--stage=1", *SEED)
    rc = run.finish()
    out = run.output()
    assert rc == 1, out
    assert "1 failed, 1 passed" in out, out
    first = (pytester.path / "first.pid").read_text()
    assert f"minigram stage 1 (pid {first}) was killed by SIGKILL" in out
    assert "--- last 30 lines of " in out and "server.log ---" in out
    _assert_clean(run, "minigram")
