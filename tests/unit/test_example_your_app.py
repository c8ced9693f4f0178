"""The README's "your own app" example (docs/examples/your_app), run as a user would run it:
a load test with thresholds, a saved baseline, a comparison and the HTML report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_minigram.storage import load_run

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "your_app"


def test_your_app_example(pytester: pytest.Pytester) -> None:
    for f in EXAMPLE.glob("*.py"):
        shutil.copy(f, pytester.path / f.name)
    first = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--stage=1,2",
                                          "--minigram-save=base", timeout=120)
    first.assert_outcomes(passed=2)  # another service: no stage parametrization
    first.stdout.fnmatch_lines(["*test_site_holds_10_users*10 users 12s*PASSED*",
                                "*test_site_at_20_arrivals_per_second*20/s 12s*PASSED*"])
    second = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--minigram-compare=base",
        "--minigram-compare-fail=p50:+200%", "--minigram-report=report.html",
        "--minigram-results=run.json", timeout=120)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["*against the baseline base in .minigram*",
                                 "*wrote HTML report: report.html*"])
    run = load_run(pytester.path / "run.json")
    by_test = {t["test"].rsplit("::", 1)[1]: t for t in run["tests"]}
    assert set(by_test["test_site_holds_10_users"]["result"]["actions"]) == {"listing", "page"}
    assert by_test["test_site_at_20_arrivals_per_second"]["result"]["workload"]["model"] == "open"
    assert "test_site_holds_10_users" in (pytester.path / "report.html").read_text()


DEPLOYMENTS = '''
import sys

import pytest

from pytest_minigram.load import Journey
from pytest_minigram.server import ServerProcess, free_port

SERVICE = """
import http.server, sys, time

delay = float(sys.argv[2]) / 1000

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to every answer

    def do_GET(self):
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def deployment(tmp, name, delay_ms):
    script = tmp / "service.py"
    script.write_text(SERVICE)
    port = free_port()
    return ServerProcess([sys.executable, str(script), str(port), str(delay_ms)],
                         log_path=tmp / f"{name}.log", name=name,
                         health_url=f"http://127.0.0.1:{port}/health")


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    with deployment(tmp_path_factory.mktemp("release"), "release", 6) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def main_branch(tmp_path_factory):
    with deployment(tmp_path_factory.mktemp("main"), "main", 2) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture
def minigram_target(release):
    return release


@pytest.fixture
def minigram_baseline_target(main_branch):
    return main_branch


async def fetch(user):
    await user.get("/item", name="item")


def pytest_minigram_add_journeys(config):
    return [Journey("fetch", fetch)]
'''


def test_your_app_gated_against_its_baseline_deployment_side_by_side(
        pytester: pytest.Pytester) -> None:
    """Another service's duet: ``minigram_baseline_target`` returns the main branch's
    deployment; a release three times slower fails the gate, with no saved run."""
    pytester.makeconftest(DEPLOYMENTS)
    pytester.makepyfile(test_duet="""
import pytest

@pytest.mark.perf(journey="fetch", users=1, duration="5s", ramp_up="1s", rounds=2)
def test_item():
    pass
""")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                        "--minigram-compare-fail=p50:+50%",
                                        "--minigram-results=run.json", timeout=120)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*performance regression against the baseline (measured side by side at http://*)*",
        "*p50: *beyond p50:+50%*"])
    (test,) = load_run(pytester.path / "run.json")["tests"]
    assert test["duet_baseline"]["actions"]["item"]["p50"] < 0.005
    assert test["result"]["actions"]["item"]["p50"] > 0.005
    # without the baseline deployment and with nothing saved, the gate has nothing to gate
    # on: the perf test fails and says how to get a baseline
    pytester.makepyfile(test_duet="""
import pytest

@pytest.fixture
def minigram_baseline_target():
    return None

@pytest.mark.perf(journey="fetch", users=1, duration="2s")
def test_item():
    pass
""")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                        "--minigram-compare-fail=p50:+50%", timeout=120)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*--minigram-compare-fail: no baseline to gate on: *no saved run to compare against*"
        "or measure one side by side (--minigram-duet, or a minigram_baseline_target fixture)"])
