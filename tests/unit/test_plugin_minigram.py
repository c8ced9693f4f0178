"""End-to-end against the real Minigram: every stage, two xdist workers, servers started once."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import psutil
import pytest

TESTS = """
import pytest

@pytest.mark.perf
def test_realistic_holds(minigram_load):
    result = minigram_load("realistic", users=4, duration="3s")
    assert result.count > 20
    assert {"register", "login", "feed"} <= set(result.actions)
    result.check("p99 < 5s")

def test_api_round_trip(minigram_client, minigram_server):
    minigram_client.register("e2e_user", "password123")
    minigram_client.login("e2e_user", "password123")
    assert minigram_client.profile("e2e_user")["username"] == "e2e_user"
    assert minigram_server.seed["users"] == 20
"""


def _minigram_children() -> set[int]:
    me = psutil.Process()
    return {p.pid for p in me.children(recursive=True)
            if "minigram" in " ".join(_cmdline(p))}


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def test_all_stages_with_two_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_minigram=TESTS)
    before = _minigram_children()  # e.g. this session's own perf servers
    xml = pytester.path / "junit.xml"
    res = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--stage=all", "--minigram-require-backends",
        "--minigram-seed-users=20", "--minigram-seed-photos=40", f"--junitxml={xml}",
        timeout=300)
    res.assert_outcomes(passed=6)
    res.stdout.fnmatch_lines(["minigram: stages 1, 1.5, 2",
                              "*minigram perf summary*",
                              "test_realistic_holds?stage1?*1*4 users 3s*PASSED*",
                              "test_realistic_holds?stage1.5?*1.5*4 users 3s*PASSED*",
                              "test_realistic_holds?stage2?*2*4 users 3s*PASSED*"])
    cases = list(ET.parse(xml).getroot().iter("testcase"))
    names = sorted(c.get("name", "") for c in cases)
    assert names == sorted([f"test_{t}[stage{s}]" for t in ("api_round_trip", "realistic_holds")
                            for s in ("1", "1.5", "2")])
    perf = [c for c in cases if c.get("name", "").startswith("test_realistic_holds")]
    stages = {p.get("value") for c in perf for p in c.iter("property")
              if p.get("name") == "minigram_stage"}
    assert stages == {"1", "1.5", "2"}
    assert not _minigram_children() - before  # the inner session stopped all it started


ROUNDS_TESTS = """
import pytest

@pytest.mark.perf(journey="feed", users=1, duration="6s", ramp_up="1s")
def test_feed():
    pass

def test_servers(minigram_server):
    assert len(minigram_server.urls) == 3 and minigram_server.urls[0] == minigram_server.url
    assert len(set(minigram_server.pids)) == 3 and None not in minigram_server.pids
"""


def test_rounds_run_on_their_own_server_processes_and_the_gate_reads_them(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    pytester.makepyfile(test_rounds=ROUNDS_TESTS)
    before = _minigram_children()
    common = ("-p", "no:cacheprovider", "--minigram-rounds=3", "--minigram-seed-users=20",
              "--minigram-seed-photos=40")
    # the baseline, with two xdist workers sharing each round's load
    res = pytester.runpytest_subprocess(*common, "-n", "2", "--minigram-results=base.json",
                                        timeout=300)
    res.assert_outcomes(passed=2)
    base = json.loads((pytester.path / "base.json").read_text())
    result = base["tests"][0]["result"]
    targets = [r["target"] for r in result["rounds"]]
    assert len(set(targets)) == 3  # three rounds, three server processes
    assert {row["round"] for row in result["timeseries"]} == {0, 1, 2}
    assert result["generator"]["processes"] == 2
    # the feed three times slower on every process: the gate fails the test and names it
    monkeypatch.setenv("MINIGRAM_FAULTS", "feed:delay=200%")
    res = pytester.runpytest_subprocess(*common, "--minigram-compare=base.json",
                                        "--minigram-compare-fail=p50:+50%", timeout=300)
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*performance regression against the baseline (base.json)*",
                              "*p50: *beyond p50:+50%*"])
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    assert not _minigram_children() - before


DUET_TESTS = """
import pytest

@pytest.mark.perf(journey="feed", users=1, duration="6s", ramp_up="1s")
def test_feed():
    pass
"""


def test_duet_measures_the_baseline_checkout_side_by_side_and_gates_on_it(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """--minigram-duet: the baseline checkout runs without this checkout's faults, so a
    feed made three times slower here is a regression against it, with no saved run."""
    import json
    from pathlib import Path

    import pytest_minigram

    root = Path(pytest_minigram.__file__).resolve().parents[1]
    pytester.makepyfile(test_duet=DUET_TESTS)
    before = _minigram_children()
    monkeypatch.setenv("MINIGRAM_FAULTS", "feed:delay=200%")
    res = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--minigram-duet={root}", "--minigram-rounds=2",
        "--minigram-seed-users=20", "--minigram-seed-photos=40",
        "--minigram-compare-fail=p50:+50%", "--minigram-results=run.json", timeout=300)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*performance regression against the baseline (measured side by side at "
        "http://127.0.0.1:*)*",
        "*p50: *beyond p50:+50%*"])
    run = json.loads((pytester.path / "run.json").read_text())
    (test,) = run["tests"]
    head, base = test["result"], test["duet_baseline"]
    assert len(head["rounds"]) == len(base["rounds"]) == 2
    # each side on its own two server processes
    assert len({r["target"] for r in head["rounds"] + base["rounds"]}) == 4
    assert head["actions"]["feed"]["p50"] > 2 * base["actions"]["feed"]["p50"]
    assert not _minigram_children() - before


BASELINE_DIES = """
import os, signal

import psutil

def test_feed(minigram_load, minigram_baseline_target):
    port = int(minigram_baseline_target[0].rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            try:
                os.kill(conn.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the other worker was first
    minigram_load("feed", users=2, duration="3s", ramp_up="1s")
"""


def test_a_duet_baseline_that_dies_fails_the_test_on_xdist_workers(
        pytester: pytest.Pytester) -> None:
    """The workers did not start the baseline's servers (and may run on other machines): the
    controller's health checks over HTTP notice it, not pids."""
    from pathlib import Path

    import pytest_minigram

    root = Path(pytest_minigram.__file__).resolve().parents[1]
    pytester.makepyfile(test_dies=BASELINE_DIES)
    before = _minigram_children()
    res = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", f"--minigram-duet={root}",
        "--minigram-seed-users=20", "--minigram-seed-photos=40", timeout=300)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*the duet baseline's Minigram server for stage 1 "
                              "stopped during the load*"])
    assert not _minigram_children() - before
