"""The declarative marker and the typed load function: mistakes are usage errors."""

from __future__ import annotations

import pytest

from tests.unit.plugin_helpers import TARGET_CONFTEST


@pytest.mark.parametrize(("marker", "named"), [
    ("users=200, user=3", "unknown key 'user'"),
    ("users=0", "bad users=0"),
    ("rate=-1", "bad rate=-1"),
    ("rounds=40", "bad rounds=40"),
    ("slo=['p95 <']", "bad slo"),
])
def test_a_mistake_in_the_marker_names_the_test_and_the_key(
        pytester: pytest.Pytester, marker: str, named: str) -> None:
    pytester.makeconftest(TARGET_CONFTEST)
    pytester.makepyfile(f"""
import pytest

@pytest.mark.perf(journey="ping", duration="1s", {marker})
def test_declared():
    pass
""")
    res = pytester.runpytest("-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"*test_declared*@pytest.mark.perf: {named}*"])


def test_a_journey_can_be_a_plain_async_function(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TARGET_CONFTEST)
    pytester.makepyfile("""
async def visit(user):
    await user.get("/ping", name="ping")

def test_function_journey(minigram_load):
    result = minigram_load(visit, users=2, duration=0.5)
    assert result.count > 0 and result.stats("ping").count == result.count
    result.check("ping.error_rate < 1%")
""")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)


def test_no_target_is_a_usage_error_that_says_what_to_override(
        pytester: pytest.Pytester) -> None:
    """With the Minigram harness disabled, a load needs the user's own target."""
    pytester.makepyfile("""
def test_load(minigram_load):
    minigram_load("ping", users=1, duration=0.2)
""")
    res = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:minigram-harness")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*no target to load. Override the minigram_target fixture*"])
