"""Options, ini twins, usage errors, the report header and stage parametrization."""

from __future__ import annotations

import pytest

STAGE_TESTS = """
import pytest

def test_uses_server(minigram_server):
    pass

def test_plain():
    pass
"""


@pytest.mark.parametrize(
    ("args", "named", "expected"),
    [
        (["--stage=3"], "--stage", "valid stages are 1, 1.5, 2 and all"),
        (["--stage=1,banana"], "--stage", "valid stages are 1, 1.5, 2 and all"),
        (["--minigram-users=lots"], "--minigram-users", "positive factor"),
        (["--minigram-users=-2"], "--minigram-users", "positive factor"),
        (["--minigram-rate=0"], "--minigram-rate", "positive factor"),
        (["--minigram-duration=10 parsecs"], "--minigram-duration", "10s, 500ms or 2m"),
        (["--minigram-pg-url=mysql://x"], "--minigram-pg-url", "postgresql://"),
        (["--minigram-redis-url=http://x"], "--minigram-redis-url", "redis://"),
        (["--minigram-seed-users=many"], "--minigram-seed-users", "whole number"),
        (["--minigram-rounds=0"], "--minigram-rounds", "whole number of rounds from 1 to 16"),
        (["--minigram-rounds=two"], "--minigram-rounds", "whole number of rounds from 1 to 16"),
        (["--minigram-duet=/nonexistent/main"], "--minigram-duet", "minigram/__init__.py"),
    ],
)
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, args: list[str], named: str,
                                     expected: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    res = pytester.runpytest(*args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"*{named}*invalid value*{expected}*"])


def test_ini_twin_is_validated_and_named(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nminigram_stage = 7\n")
    pytester.makepyfile("def test_x(): pass")
    res = pytester.runpytest()
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*--stage (ini: minigram_stage): invalid value '7'*"])


def test_option_overrides_ini_and_header_shows_settings(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nminigram_stage = 2\nminigram_users = 0.5\n")
    pytester.makepyfile("def test_x(): pass")
    res = pytester.runpytest("--stage=1,1.5", "--minigram-duration=5s")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([
        "minigram: users x0.5, rate x1, duration 5s",
        "minigram: generator processes: 1*",
        "minigram: stages 1, 1.5",
        "minigram: backends: PostgreSQL*Redis*",
    ])


def test_help_shows_the_minigram_group(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest("--help")
    res.stdout.fnmatch_lines(["*performance testing with pytest-minigram*",
                              "*--minigram-users=FACTOR*", "*--minigram-report*",
                              "*Minigram, the reference target*", "*--stage=STAGES*",
                              "*minigram_stage*"])


def test_perf_marker_is_registered(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest("--markers")
    res.stdout.fnmatch_lines(["@pytest.mark.perf(*"])


@pytest.mark.parametrize(
    ("stage", "ids"),
    [
        ("1", ["stage1"]),
        ("2", ["stage2"]),
        ("1,2", ["stage1", "stage2"]),
        ("all", ["stage1", "stage1.5", "stage2"]),
    ],
)
def test_stage_parametrizes_tests_that_use_a_server(pytester: pytest.Pytester, stage: str,
                                                     ids: list[str]) -> None:
    pytester.makepyfile(test_stages=STAGE_TESTS)
    res = pytester.runpytest("--collect-only", "-q", f"--stage={stage}")
    expected = [f"test_stages.py::test_uses_server[{i}]" for i in ids]
    collected = [line for line in res.stdout.lines if "::" in line]
    assert collected == [*expected, "test_stages.py::test_plain"]


def test_perf_marker_selects_load_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.perf
        def test_load(): pass

        def test_fast(): pass
    """)
    pytester.runpytest("-m", "perf").assert_outcomes(passed=1, deselected=1)
    pytester.runpytest("-m", "not perf").assert_outcomes(passed=1, deselected=1)
