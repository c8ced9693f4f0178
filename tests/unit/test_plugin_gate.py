"""The gate says what it can see: a gated metric it cannot judge fails the test, and the
smallest change it would detect is reported beside the tolerance."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.unit.plugin_helpers import TARGET_CONFTEST

PERF = """
import os
import pytest

@pytest.mark.perf
def test_ping(minigram_load):
    minigram_load("ping", users=2, duration=float(os.environ["PING_SECONDS"]))
"""


@pytest.fixture
def target(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TARGET_CONFTEST)
    pytester.makepyfile(test_perf=PERF)
    return pytester


def test_a_3s_test_cannot_be_judged_and_says_why(target: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PING_SECONDS", "3")
    target.runpytest("-p", "no:cacheprovider", "--minigram-save=base").assert_outcomes(
        passed=1)
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-compare=base",
                           "--minigram-compare-fail=p95:+10%", "--junitxml=junit.xml")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*the regression gate cannot judge this test against the baseline*",
        "*p95 (p95:+10%): too few steady-state windows to test*make the load longer*",
        "*CANNOT JUDGE (p95:+10%)*"])
    props = {p.get("name"): p.get("value") for p in ET.parse(target.path / "junit.xml").iter(
        "property")}
    assert props["minigram_gate_p95_status"] == "cannot judge"
    # asked for warnings only, the same comparison passes and still says it cannot judge
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-compare=base",
                           "--minigram-compare-fail=p95:+10%", "--minigram-compare-warn")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*CANNOT JUDGE (p95:+10%)*"])


def test_the_detectable_change_is_reported_beside_the_tolerance(
        target: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PING_SECONDS", "12")
    target.runpytest("-p", "no:cacheprovider", "--minigram-save=base").assert_outcomes(
        passed=1)
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-compare=base",
                           "--minigram-compare-fail=throughput:-90%,p50:+1000%",
                           "--junitxml=junit.xml")
    res.assert_outcomes(passed=1)
    props = {p.get("name"): p.get("value") for p in ET.parse(target.path / "junit.xml").iter(
        "property")}
    assert props["minigram_gate_p50_tolerance"] == "p50:+1000%"
    assert props["minigram_gate_p50_detectable"].startswith("+")
    assert props["minigram_gate_p50_detectable"].endswith("%")
    assert props["minigram_gate_throughput_detectable"].startswith("-")
    assert props["minigram_gate_p50_status"] == "ok"
    seen = float(props["minigram_gate_p50_detectable"].strip("+%"))
    assert 0 <= seen < 1000  # 0 when every window's p50 fell in one histogram bucket
    res.stdout.fnmatch_lines(["*metric*can see*gate*", f"*p50*+{seen:.1f}%*ok*"])


def test_a_saved_history_is_pooled(target: pytest.Pytester,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PING_SECONDS", "2")
    for _ in range(3):
        target.runpytest("-p", "no:cacheprovider", "--minigram-save=main").assert_outcomes(
            passed=1)
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-compare=main",
                           "--minigram-compare-history=3", "--minigram-compare-fail=p50:+500%",
                           "--minigram-compare-warn")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*against the baseline main in .minigram*, the last 3 runs "
                              "pooled*"])
    bad = target.runpytest("-p", "no:cacheprovider", "--minigram-compare-history=0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--minigram-compare-history*invalid value '0'*"])


TWO_LOADS = """
import pytest

@pytest.mark.perf
def test_ping(minigram_load):
    minigram_load("ping", users=1, duration=10)
    minigram_load("slow", users=2, duration=10)
"""


def test_a_second_load_is_gated_against_the_second_load(pytester: pytest.Pytester) -> None:
    """A test's second load used to be compared with the baseline's first."""
    pytester.makeconftest(TARGET_CONFTEST)
    pytester.makepyfile(test_perf=TWO_LOADS)
    pytester.runpytest("-p", "no:cacheprovider", "--minigram-save=base").assert_outcomes(
        passed=1)
    res = pytester.runpytest("-p", "no:cacheprovider", "--minigram-compare=base",
                             "--minigram-compare-fail=p50:+50%", "--minigram-compare-warn")
    res.assert_outcomes(passed=1)
    assert "REGRESSION" not in str(res.stdout)
    # judged, both loads: the gate could see a +50 % move of each
    res.stdout.fnmatch_lines(["*test_ping (stage -)*", "*p50 *ok*", "*test_ping#2 (stage -)*",
                              "*p50 *ok*"])


def test_a_test_missing_from_the_baseline_is_not_silently_ungated(
        target: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PING_SECONDS", "1")
    target.runpytest("-p", "no:cacheprovider", "--minigram-save=base").assert_outcomes(
        passed=1)
    target.makepyfile(test_perf=PERF.replace("def test_ping", "def test_renamed"))
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-compare=base",
                           "--minigram-compare-fail=p95:+10%")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*cannot judge this test*", "*test_renamed*not in the baseline*"])


MIXED = """
import pytest

@pytest.mark.perf
def test_duet(minigram_load):
    minigram_load("ping", users=2, duration=10)

@pytest.mark.perf
def test_saved(minigram_load):
    minigram_load("ping", users=2, duration=10)
"""

DUET_CONFTEST_ADDON = """

@pytest.fixture
def minigram_baseline_target(request, tiny_server):
    # only test_duet measures a baseline side by side
    return tiny_server if request.node.name == "test_duet" else None
"""


def test_a_session_mixing_duet_and_saved_baselines_shows_both(
        pytester: pytest.Pytester) -> None:
    """The session's comparison table used to show only the tests with a side-by-side
    baseline once one test had it, dropping those gated against the saved run."""
    pytester.makeconftest(TARGET_CONFTEST + DUET_CONFTEST_ADDON)
    pytester.makepyfile(test_perf=MIXED)
    pytester.runpytest("-p", "no:cacheprovider", "--minigram-save=base").assert_outcomes(
        passed=2)
    res = pytester.runpytest("-p", "no:cacheprovider", "--minigram-compare=base",
                             "--minigram-compare-fail=p50:+1000%",
                             "--minigram-results=run.json")
    res.assert_outcomes(passed=2)
    out = res.stdout.str()
    comparison = out[out.index("side by side and base"):]
    assert "test_duet" in comparison and "test_saved" in comparison
    import json
    run = json.loads((pytester.path / "run.json").read_text())
    by_test = {t["test"].rsplit("::", 1)[-1]: t for t in run["tests"]}
    assert by_test["test_duet"].get("duet_baseline") is not None
    assert by_test["test_saved"].get("duet_baseline") is None
    assert all(by_test[n]["comparison"] for n in ("test_duet", "test_saved"))
