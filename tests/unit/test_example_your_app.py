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
    first.stdout.fnmatch_lines(["*test_site_holds_10_users*10 users 3s*PASSED*",
                                "*test_site_at_20_arrivals_per_second*20/s 3s*PASSED*"])
    second = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--minigram-compare=base",
        "--minigram-compare-fail=p95:+200%", "--minigram-report=report.html",
        "--minigram-results=run.json", timeout=120)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["*against the baseline base in .minigram*",
                                 "*wrote HTML report: report.html*"])
    run = load_run(pytester.path / "run.json")
    by_test = {t["test"].rsplit("::", 1)[1]: t for t in run["tests"]}
    assert set(by_test["test_site_holds_10_users"]["result"]["actions"]) == {"listing", "page"}
    assert by_test["test_site_at_20_arrivals_per_second"]["result"]["workload"]["model"] == "open"
    assert "test_site_holds_10_users" in (pytester.path / "report.html").read_text()
