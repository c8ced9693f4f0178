"""End-to-end: the ``minigram_breaking_point`` fixture against the tiny target."""

from __future__ import annotations

import json

import pytest

from tests.unit.plugin_helpers import TARGET_CONFTEST

GATE = """
from pytest_minigram.load import Journey

# a deep accept queue, so that every user connects at once (the default of 5 delays the
# sixth connection by a SYN retransmit)
QuietServer.request_queue_size = 128


async def gate(user):
    # users 0..5 are served, the 7th and later concurrent user gets a 500: the breaking
    # point is exactly 6 users
    await user.get("/fail" if user.id >= 6 else "/ping", name="gate")

"""

TESTS = """
import pytest


@pytest.mark.perf
def test_users(minigram_breaking_point):
    bp = minigram_breaking_point("gate", slo=["error_rate < 1%"], users=(1, 64),
                                 step_duration="0.5s")
    assert (bp.value, bp.low, bp.high) == (6, 6, 7)
    assert [s.load for s in bp.steps] == [1, 2, 4, 8, 6, 7]


@pytest.mark.perf
def test_rate(minigram_breaking_point):
    bp = minigram_breaking_point("ping", slo=["throughput < 45"], rate=(10, 400),
                                 step_duration="0.5s", resolution=0.1)
    assert bp.metric == "rate" and bp.found
    assert 30 <= bp.low < bp.high <= 65


@pytest.mark.perf
def test_bad_slo(minigram_breaking_point):
    minigram_breaking_point("ping", slo=["p95 <<< 3"], users=(1, 4))
"""


@pytest.fixture
def target(pytester: pytest.Pytester) -> pytest.Pytester:
    conftest = TARGET_CONFTEST.replace('return [Journey("ping", ping)',
                                       'return [Journey("gate", gate), Journey("ping", ping)')
    pytester.makeconftest(conftest + GATE)
    pytester.makepyfile(test_bp=TESTS)
    return pytester


def test_fixture_finds_users_and_rate_and_keeps_one_record(target: pytest.Pytester) -> None:
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-results=run.json")
    res.assert_outcomes(passed=2, errors=0, failed=1)
    res.stdout.fnmatch_lines(["*bad threshold*"])
    run = json.loads((target.path / "run.json").read_text())
    entries = {e["test"]: e for e in run["tests"]}
    assert set(entries) == {"test_bp.py::test_users", "test_bp.py::test_rate"}, \
        "one record per search, the steps are not separate tests"
    users = entries["test_bp.py::test_users"]
    assert users["kind"] == "breaking"
    bp = users["breaking_point"]
    assert (bp["users"], bp["low"], bp["high"], bp["metric"]) == (6, 6, 7, "users")
    assert [s["passed"] for s in bp["steps"]] == [True, True, True, False, True, False]
    assert users["result"]["workload"]["users"] == 6, "the kept record is the highest passing step"
    assert users["result"]["total"]["errors"] == 0
    assert users["slo"][0]["threshold"] == "error_rate < 1%" and users["slo"][0]["passed"]
    rate = entries["test_bp.py::test_rate"]
    assert rate["breaking_point"]["metric"] == "rate"
    assert rate["breaking_point"]["rate"] == rate["result"]["workload"]["rate"]


def test_users_factor_scales_the_declared_range(target: pytest.Pytester) -> None:
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-users=0.5", "-k", "users")
    # the range becomes (0.5, 32) -> start 1; the gate still breaks at 7 actual users
    res.assert_outcomes(passed=1)
