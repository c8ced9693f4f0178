"""End-to-end: what a perf session writes (results file, stored runs, pytest-benchmark JSON,
HTML report, step summary) and the regression gate failing a test against a saved baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_minigram.storage import load_run
from tests.unit.plugin_helpers import TARGET_CONFTEST

PERF = """
import os
import pytest

@pytest.mark.perf
def test_ping(minigram_load):
    journey = os.environ.get("PING_JOURNEY", "ping")
    result = minigram_load(journey, users=2, duration=os.environ.get("PING_DURATION", "1s"))
    result.check("error_rate < 1%")
"""


@pytest.fixture
def target(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TARGET_CONFTEST)
    pytester.makepyfile(test_perf=PERF)
    return pytester


def test_results_file_storage_benchmark_json_and_report(target: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    summary = target.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-results=out/run.json",
                           "--minigram-save=first", "--minigram-storage=store",
                           "--minigram-benchmark-json=out/bench.json",
                           "--minigram-report=out/report.html")
    res.assert_outcomes(passed=1)
    run = load_run(target.path / "out" / "run.json")  # validates the schema
    (entry,) = run["tests"]
    assert entry["test"] == "test_perf.py::test_ping" and entry["stage"] == "-"
    assert entry["verdict"] == "passed" and entry["result"]["total"]["count"] > 10
    assert entry["slo"][0]["threshold"] == "error_rate < 1%" and entry["slo"][0]["passed"]
    assert run["environment"]["fingerprint"]
    (saved,) = list((target.path / "store").glob("*/0001_first.json"))
    assert load_run(saved)["tests"][0]["result"]["total"] == entry["result"]["total"]
    bench = json.loads((target.path / "out" / "bench.json").read_text())
    assert [b["fullname"] for b in bench["benchmarks"]][0].startswith("test_perf.py::test_ping")
    html = (target.path / "out" / "report.html").read_text()
    assert "test_ping" in html and "<script" in html
    text = summary.read_text()
    assert "### pytest-minigram: 1 perf test(s), all passed" in text
    assert "| test_ping | - | 2 users 1s |" in text
    res.stdout.fnmatch_lines(["*wrote results file: out/run.json*", "*wrote saved run: *",
                              "*wrote HTML report: out/report.html*"])


def test_compare_fail_names_the_regression(target: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # 12 one-second windows on each side: enough for the significance test (8 needed)
    monkeypatch.setenv("PING_DURATION", "12s")
    base = target.runpytest("-p", "no:cacheprovider", "--minigram-storage=store",
                            "--minigram-save=base")
    base.assert_outcomes(passed=1)
    same = target.runpytest("-p", "no:cacheprovider", "--minigram-storage=store",
                            "--minigram-compare=base", "--minigram-compare-fail=p95:+20%")
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(["*against the baseline base in store*", "*p95*ok*"])
    monkeypatch.setenv("PING_JOURNEY", "slow")  # the same test id, 20 ms slower per request
    xml = target.path / "junit.xml"
    slow = target.runpytest("-p", "no:cacheprovider", "--minigram-storage=store",
                            "--minigram-compare=base", "--minigram-compare-fail=p95:+20%",
                            f"--junitxml={xml}")
    slow.assert_outcomes(failed=1)
    assert slow.ret == 1
    slow.stdout.fnmatch_lines(["*performance regression against the baseline*",
                               "*p95: * -> * beyond p95:+20%*", "*REGRESSION (p95:+20%)*"])
    assert "performance regression" in xml.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--minigram-compare=nosuch"], "*--minigram-compare: *no saved run matching 'nosuch'*"),
    (["--minigram-compare=missing.json"], "*--minigram-compare: *missing.json*"),
    (["--minigram-compare=bad.json"], "*--minigram-compare: *bad.json*"),
    (["--minigram-compare-fail=p95:lots"], "*--minigram-compare-fail (ini: *p95:lots*"),
])
def test_bad_baseline_or_tolerance_is_a_usage_error(target: pytest.Pytester, args: list[str],
                                                    message: str) -> None:
    Path(target.path / "bad.json").write_text("{not json")
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-storage=store", *args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([message])
    assert "Traceback" not in res.stderr.str()


SECRET_TARGET = """
import pytest

@pytest.fixture
def minigram_target(tiny_server):
    return tiny_server.replace("http://", "http://loaduser:TARGET_PW@") + "/?token=TOKEN_VALUE"
"""


def test_secrets_never_reach_the_outputs(target: pytest.Pytester, pg_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A storage password and a target's credentials stay out of the terminal, the step
    summary, the results file, the report, JUnit and the stored rows."""
    storage = pg_url.replace("postgresql://postgres@", "postgresql://postgres:DB_PW@")
    target.makeconftest(TARGET_CONFTEST + SECRET_TARGET)
    summary = target.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    common = ["-p", "no:cacheprovider", f"--minigram-storage={storage}",
              "--junitxml=junit.xml", "--minigram-results=run.json",
              "--minigram-report=report.html", "--minigram-benchmark-json=bench.json"]
    first = target.runpytest(*common, "--minigram-save=base")
    first.assert_outcomes(passed=1)
    second = target.runpytest(*common, "--minigram-compare=base")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*against the baseline base in postgresql://postgres:***@*"])
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.connect() as conn:
        rows = "".join(conn.execute(text("SELECT data FROM minigram_runs")).scalars())
    engine.dispose()
    texts = {"terminal": str(first.stdout) + str(second.stdout) + str(second.stderr),
             "stored rows": rows}
    for name in ("summary.md", "run.json", "report.html", "junit.xml", "bench.json"):
        texts[name] = (target.path / name).read_text()
    for where, content in texts.items():
        for secret in ("DB_PW", "TARGET_PW", "TOKEN_VALUE"):
            assert secret not in content, f"{secret} leaked into {where}"
    assert "loaduser:***@" in texts["run.json"]


def test_a_broken_storage_costs_no_other_output(target: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A storage under a regular file used to end the session in a traceback, without the
    report, the step summary or the perf summary."""
    (target.path / "afile").write_text("not a directory")
    summary = target.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = target.runpytest("-p", "no:cacheprovider", "--minigram-storage=afile/runs",
                           "--minigram-save=x", "--minigram-results=run.json",
                           "--minigram-report=report.html")
    res.assert_outcomes(passed=1)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    out = str(res.stdout) + str(res.stderr)
    assert "Traceback" not in out and "INTERNALERROR" not in out
    res.stdout.fnmatch_lines(["*minigram perf summary*", "*minigram: wrote HTML report*",
                              "*minigram: ERROR: saved run not written: *afile*"])
    assert (target.path / "report.html").is_file() and (target.path / "run.json").is_file()
    assert "pytest-minigram" in summary.read_text()
