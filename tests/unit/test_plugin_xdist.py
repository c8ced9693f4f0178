"""Load generators that coordinate over the network: real pytest sessions with xdist workers,
some isolated as remote workers are (their own /tmp and PID namespace), some named, skewed,
failing or killed. Nothing may pass that did not really pass."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.2"  # a loopback address other than 127.0.0.1: what a remote worker would dial

# A service of the user's own, started ONCE on the controller (pytest_minigram_provide) and
# shared by every worker, which learns its URL from the coordinator; it counts what it served.
CONFTEST = r'''
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pytest_minigram.load import Journey
from pytest_minigram.plugin import xdist_worker

HOST = os.environ.get("SERVICE_HOST", "127.0.0.1")
HITS = {"n": 0}
LOCK = threading.Lock()
SERVERS = []

if os.environ.get("SHIFT_CLOCK_OF") == os.environ.get("PYTEST_XDIST_WORKER", "-"):
    _real = time.time
    time.time = lambda: _real() + 2.0  # this worker's clock is 2 s ahead


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to every answer

    def do_GET(self):
        if self.path.startswith("/count"):
            body = json.dumps(HITS).encode()
        else:
            with LOCK:
                HITS["n"] += 1
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def pytest_minigram_provide(config, name):
    if name != "service":
        return None
    server = Quiet((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SERVERS.append(server)
    return {"url": f"http://{HOST}:{server.server_address[1]}", "pid": os.getpid()}


def pytest_unconfigure(config):
    for server in SERVERS:
        server.shutdown()
        server.server_close()


@pytest.fixture
def service(pytestconfig):
    worker = xdist_worker(pytestconfig)
    assert worker is not None, "these tests run under xdist"
    return worker.provided("service")


@pytest.fixture
def minigram_target(service):
    return service["url"]


def hits(url):
    import urllib.request
    with urllib.request.urlopen(url + "/count", timeout=5) as r:
        return json.loads(r.read())["n"]


async def ping(user):
    await user.get("/ping", name="ping")
    if os.environ.get("DIE_ON") == os.environ.get("PYTEST_XDIST_WORKER") and \
            user.rng.random() < 0.02:
        os.kill(os.getpid(), 9)


async def pong(user):
    await user.get("/pong", name="pong")


def pytest_minigram_add_journeys(config):
    return [Journey("ping", ping), Journey("pong", pong)]
'''

TESTS = r'''
import os
import pytest
from conftest import hits

@pytest.mark.perf
def test_counts_add_up(minigram_load, service):
    before = hits(service["url"])
    result = minigram_load("ping", users=4, duration=1.5)
    served = hits(service["url"]) - before
    # what the service served, but for the requests in flight when the load ended (at most
    # one per user), which no result counts
    assert 0 < result.count <= served <= result.count + 4
    workers = result.result.generator["coordination"]["workers"]
    assert sum(w["requests"] for w in workers.values()) == result.count
    assert result.result.generator["processes"] == len(workers) == 2
    assert result.result.workload["users"] == 4
    print("COORD " + __import__("json").dumps(result.result.generator["coordination"]))

@pytest.mark.perf
def test_two_loads_in_one_test(minigram_load, service):
    first = minigram_load("ping", users=2, duration=1)
    mid = hits(service["url"])
    second = minigram_load("pong", users=4, duration=1)
    assert set(first.actions) == {"ping"} and set(second.actions) == {"pong"}
    assert second.count <= hits(service["url"]) - mid <= second.count + 2 + 4
    assert second.result.workload["users"] == 4
    # one common start (how tight is benchmarks/start_spread.py's figure, not a test's)
    assert second.result.generator["coordination"]["start_spread"] < 1.0

@pytest.mark.perf
def test_slo_fails(minigram_load):
    minigram_load("ping", users=2, duration=1).check("p95 < 1us")

def test_plain():
    pass
'''


@pytest.fixture
def project() -> Iterator[Path]:
    """Outside /tmp: a worker with a private /tmp must still see the test files, as a remote
    worker sees its rsync'ed copy, but not the controller's temporary files."""
    path = Path(tempfile.mkdtemp(prefix="minigram-xdist-", dir="/var/tmp"))
    (path / "conftest.py").write_text(CONFTEST)
    (path / "test_dist.py").write_text(TESTS)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(project: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 180) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
                           "--junitxml=junit.xml", *args], cwd=project, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _junit(project: Path) -> dict[str, str]:
    """Test name -> passed / failed / error, from JUnit XML."""
    out = {}
    for case in ET.parse(project / "junit.xml").getroot().iter("testcase"):
        kids = {child.tag for child in case}
        out[case.get("name", "")] = ("failed" if "failure" in kids else
                                     "error" if "error" in kids else
                                     "skipped" if "skipped" in kids else "passed")
    return out


EXPECTED = {"test_counts_add_up": "passed", "test_two_loads_in_one_test": "passed",
            "test_slo_fails": "failed", "test_plain": "passed"}


def _assert_verdicts(res: subprocess.CompletedProcess[str], project: Path) -> None:
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "1 failed, 3 passed" in out, out
    assert _junit(project) == EXPECTED, out
    assert "FAILED test_dist.py::test_slo_fails" in out


def _wrapper(tmp_path: Path) -> Path:
    """A python that runs in its own mount namespace (a private /tmp) and PID namespace."""
    script = tmp_path / "isolated-python"
    script.write_text(
        "#!/bin/sh\n"
        "exec unshare --mount --pid --fork --mount-proc --propagation private sh -c "
        f"'mount -t tmpfs tmpfs /tmp && exec {sys.executable} \"$@\"' isolated \"$@\"\n")
    script.chmod(0o755)
    return script


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs unshare and root for private mount and PID namespaces")
def test_isolated_workers_on_another_loopback_address(project: Path, tmp_path: Path) -> None:
    python = _wrapper(tmp_path)
    probe = subprocess.run([str(python), "-c", "import os; print(os.getpid(), "
                            "len(os.listdir('/tmp')))"], capture_output=True, text=True,
                           timeout=30, check=True)
    assert probe.stdout.split() == ["1", "0"]  # pid 1 in its namespace, an empty /tmp
    res = _run(project, "--tx", f"popen//python={python}", "--tx", f"popen//python={python}",
               "--dist", "load", f"--minigram-coordinator={HOST}", "--minigram-results=run.json",
               env={"SERVICE_HOST": HOST})
    _assert_verdicts(res, project)
    assert "minigram: generator processes: 2 xdist workers on this host" in res.stdout
    run = json.loads((project / "run.json").read_text())
    counted = next(t for t in run["tests"] if "test_counts_add_up" in t["test"])
    assert counted["result"]["labels"]["target"].startswith(f"http://{HOST}:")


def test_named_workers_and_a_skewed_clock(project: Path) -> None:
    """--tx popen//id=alpha once made 'no tests ran' and exit 0; a worker 2 s ahead was
    merged as if it had started with the others."""
    res = _run(project, "--tx", "popen//id=alpha", "--tx", "popen//id=beta",
               "--dist", "load", env={"SHIFT_CLOCK_OF": "beta"})
    _assert_verdicts(res, project)
    line = next(x for x in res.stdout.splitlines() if x.startswith("COORD "))
    coord = json.loads(line[len("COORD "):])
    assert set(coord["workers"]) == {"alpha", "beta"}
    # the skew is measured and corrected: unaligned, the workers would start 2 s apart
    # (how closely is benchmarks/start_spread.py's figure, not an assertion on a busy machine)
    assert abs(coord["workers"]["beta"]["clock_offset"] - 2.0) < 0.5
    assert abs(coord["workers"]["alpha"]["clock_offset"]) < 0.5
    assert coord["start_spread"] < 1.0


@pytest.mark.parametrize("dist", ["load", "each"])
def test_dist_modes_that_work(project: Path, dist: str) -> None:
    res = _run(project, "-n", "2", "--dist", dist)
    out = res.stdout + res.stderr
    if dist == "load":
        _assert_verdicts(res, project)
    else:  # every worker runs every test: the plain test is reported per worker
        assert res.returncode == 1 and "FAILED test_dist.py::test_slo_fails" in out, out
        assert "test_counts_add_up PASSED" in out or "passed" in out


@pytest.mark.parametrize("dist", ["loadfile", "loadscope", "loadgroup", "worksteal"])
def test_dist_modes_that_cannot_work_are_refused(project: Path, dist: str) -> None:
    res = _run(project, "-n", "2", "--dist", dist)
    assert res.returncode == pytest.ExitCode.USAGE_ERROR, res.stdout + res.stderr
    assert f"--dist {dist}: pytest-minigram runs each perf test on every xdist worker" in (
        res.stdout + res.stderr)


def test_a_failure_on_a_non_first_worker_fails_the_test(project: Path) -> None:
    (project / "test_dist.py").write_text('''
import os
import pytest

@pytest.mark.perf
def test_only_gw1_fails(minigram_load):
    minigram_load("ping", users=2, duration=1)
    assert os.environ["PYTEST_XDIST_WORKER"] != "gw1", "failed on gw1 only"
''')
    res = _run(project, "-n", "2")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert _junit(project) == {"test_only_gw1_fails": "failed"}, out
    assert "on xdist worker gw1" in out and "failed on gw1 only" in out


def test_a_setup_error_on_one_worker_fails_the_test_on_all(project: Path) -> None:
    (project / "test_dist.py").write_text('''
import os
import pytest

@pytest.fixture
def flaky_setup():
    if os.environ["PYTEST_XDIST_WORKER"] == "gw1":
        raise RuntimeError("setup broke on gw1")

@pytest.mark.perf
def test_broken_setup(flaky_setup, minigram_load):
    minigram_load("ping", users=2, duration=1)
''')
    res = _run(project, "-n", "2", timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert _junit(project) == {"test_broken_setup": "error"}, out
    assert "setup broke on gw1" in out


def test_a_worker_killed_mid_load_fails_the_test_quickly(project: Path) -> None:
    (project / "test_dist.py").write_text('''
import pytest

@pytest.mark.perf
def test_long_load(minigram_load):
    minigram_load("ping", users=2, duration=30)
''')
    res = _run(project, "-n", "2", env={"DIE_ON": "gw1"}, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "test_long_load" in out and "gw1" in out
    assert "1 passed" not in out  # nothing of it passed
    seconds = float(out.rsplit(" in ", 1)[1].split("s")[0])
    assert seconds < 25, out  # it did not wait for the 30 s load


def test_a_session_that_collected_perf_tests_and_ran_none_fails(project: Path) -> None:
    (project / "conftest.py").write_text(CONFTEST + '''

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker("perf") is not None:
        return True  # something keeps the perf tests from running
''')
    for args in ([], ["-n", "2"]):
        res = _run(project, *args)
        out = res.stdout + res.stderr
        assert res.returncode == 1, out
        assert "perf test(s) were collected and none ran" in out, out


def test_a_test_without_the_perf_marker_may_load_on_one_worker(project: Path) -> None:
    """It is load-balanced like any test: its report must not wait for the other worker."""
    (project / "test_dist.py").write_text('''
def test_quick_load(minigram_load):
    assert minigram_load("ping", users=1, duration=0.5).count > 0
''')
    res = _run(project, "-n", "2")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert _junit(project) == {"test_quick_load": "passed"}, out
