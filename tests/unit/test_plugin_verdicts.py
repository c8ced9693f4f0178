"""End-to-end tests of the plugin's verdicts: terminal, exit code and JUnit XML agree."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.unit.plugin_helpers import TARGET_CONFTEST

PASSING = """
import pytest

@pytest.mark.perf
def test_ping_holds(minigram_load):
    result = minigram_load("ping", users=4, duration="1s")
    result.check("error_rate < 1%", "p95 < 2s", "throughput > 10/s")
    assert result.count > 20
"""

FAILING = """
import pytest

@pytest.mark.perf
def test_ping_too_strict(minigram_load):
    result = minigram_load("slow", users=2, duration="1s")
    result.check("p95 < 1ms", "error_rate < 1%", "throughput > 100000/s")
"""


def junit_cases(path: str) -> list[ET.Element]:
    return list(ET.parse(path).getroot().iter("testcase"))


def props(case: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


@pytest.fixture
def target(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TARGET_CONFTEST)
    return pytester


def test_passing_perf_test_reports_pass_everywhere(target: pytest.Pytester) -> None:
    target.makepyfile(test_perf=PASSING)
    xml = target.path / "junit.xml"
    res = target.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}")
    res.assert_outcomes(passed=1)
    assert res.ret == 0
    res.stdout.fnmatch_lines(["*minigram perf summary*", "test*stage*req/s*p95*verdict*",
                              "test_ping_holds*4 users 1s*PASSED*"])
    (case,) = junit_cases(str(xml))
    p = props(case)
    assert float(p["minigram_throughput"]) > 10
    assert float(p["minigram_error_rate"]) == 0.0
    assert float(p["minigram_p95"]) > 0
    assert p["minigram_users"] == "4"


def test_failing_slo_lists_every_violation(target: pytest.Pytester) -> None:
    target.makepyfile(test_perf=FAILING)
    xml = target.path / "junit.xml"
    res = target.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}")
    res.assert_outcomes(failed=1)
    assert res.ret == 1
    res.stdout.fnmatch_lines(["*p95 < 1ms*", "*throughput > 100000/s*", "*FAILED*"])
    assert "error_rate < 1%" not in "\n".join(
        line for line in res.stdout.lines if "violated" in line.lower())
    (case,) = junit_cases(str(xml))
    assert case.find("failure") is not None
    assert "p95 < 1ms" in (case.find("failure").get("message") or "")  # type: ignore[union-attr]


def test_bad_threshold_is_a_usage_error(target: pytest.Pytester) -> None:
    target.makepyfile(test_perf="""
        import pytest

        @pytest.mark.perf
        def test_bad(minigram_load):
            minigram_load("ping", users=1, duration="0.3s").check("p95 <<< fast")
    """)
    res = target.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*UsageError*bad threshold*p95 <<< fast*"])


def test_declarative_marker_runs_without_a_body(target: pytest.Pytester) -> None:
    target.makepyfile(test_perf="""
        import pytest

        @pytest.mark.perf(journey="ping", users=2, duration="0.5s", slo=["error_rate < 1%"])
        def test_ok():
            pass

        @pytest.mark.perf(journey="failing", users=2, duration="0.5s", slo=["error_rate < 1%"])
        def test_errors():
            pass
    """)
    res = target.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*error_rate < 1%*100*"])


def test_xdist_workers_share_the_load_and_report_once(target: pytest.Pytester) -> None:
    target.makepyfile(test_perf=PASSING + FAILING.replace("import pytest", "") + """
def test_plain_one():
    assert True

def test_plain_two():
    assert True
""")
    xml = target.path / "junit.xml"
    res = target.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", f"--junitxml={xml}")
    res.assert_outcomes(passed=3, failed=1)
    assert res.ret == 1
    cases = junit_cases(str(xml))
    names = sorted(c.get("name", "") for c in cases)
    assert names == ["test_ping_holds", "test_ping_too_strict", "test_plain_one",
                     "test_plain_two"]
    holds = next(c for c in cases if c.get("name") == "test_ping_holds")
    # both workers ran 2 of the 4 users; the merged result counts all 4
    assert props(holds)["minigram_users"] == "4"
    res.stdout.fnmatch_lines(["*minigram perf summary*", "test_ping_holds*4 users*PASSED*",
                              "test_ping_too_strict*FAILED*"])
