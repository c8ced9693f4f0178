"""End-to-end against the real Minigram: every stage, two xdist workers, servers started once."""

from __future__ import annotations

import os
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


@pytest.mark.skipif(not os.environ.get("MINIGRAM_PG_URL") and not os.environ.get("CI"),
                    reason="runs stage 2; set MINIGRAM_PG_URL/MINIGRAM_REDIS_URL (CI does)")
def test_all_stages_with_two_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_minigram=TESTS)
    before = _minigram_children()  # e.g. this session's own perf servers
    xml = pytester.path / "junit.xml"
    res = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--stage=all", "--minigram-require-backends",
        "--minigram-seed-users=20", "--minigram-seed-photos=40", f"--junitxml={xml}",
        timeout=300)
    res.assert_outcomes(passed=6)
    res.stdout.fnmatch_lines(["minigram: stages 1, 1.5, 2;*",
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
