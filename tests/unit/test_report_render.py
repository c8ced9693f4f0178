"""Rendering the report: self-contained, never mutating, small enough for 50 tests x 3 stages."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_minigram.report import cli
from pytest_minigram.report.render import render_runs, write_report

DATA = Path(__file__).parent / "data" / "report"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _golden_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return {"run": _load("run.json"), "baseline": _load("baseline.json"),
            "comparison": _load("comparison.json")}


def test_rendering_never_mutates_its_input(golden: dict[str, Any], tmp_path: Path) -> None:
    before = copy.deepcopy(golden)
    write_report(tmp_path / "r.html", [golden["run"]], golden["baseline"], golden["comparison"])
    render_runs([golden["run"]])
    assert golden == before


def test_page_is_self_contained(golden: dict[str, Any]) -> None:
    html = render_runs([golden["run"]], golden["baseline"], golden["comparison"])
    assert html.startswith("<!doctype html>")
    assert not re.search(r"<(script|img|iframe)[^>]+src=", html)
    assert "<link" not in html and "@import" not in html
    assert "sourceMappingURL" not in html
    assert "default-src 'none'" in html  # the CSP forbids any fetch even if one slipped in
    assert "Chart.js v4" in html and 'id="report-data"' in html
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                     html, re.S)
    assert data is not None
    charts = json.loads(data.group(1))
    assert set(charts) == {"overview", "tests"} and len(charts["tests"]) == 12
    assert ("56% of requests failed with 503 database is locked in test_realistic[1] "
            "at 20 users") in html


def test_hostile_names_cannot_break_out(golden: dict[str, Any]) -> None:
    run = copy.deepcopy(golden["run"])
    evil = "tests/x.py::test_</script><script>alert(1)</script>[2]"
    run["tests"][-1]["test"] = evil
    html = render_runs([run])
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == 3  # data, Chart.js, report.js


def test_fifty_tests_three_stages_stay_under_two_megabytes(tmp_path: Path) -> None:
    golden = _golden_module()
    run = golden.make_run(["1", "1.5", "2"], commit="0" * 40, created_at="2025-11-28T00:00:00",
                          families=47, users=20, duration=180, spp=4)
    assert len({t["test"] for t in run["tests"]}) == 150
    raw = len(json.dumps(run))
    start = time.perf_counter()
    out = write_report(tmp_path / "big.html", [run])
    elapsed = time.perf_counter() - start
    size = out.stat().st_size
    assert size < 2_000_000, f"{size} bytes"
    assert elapsed < 20, f"rendering took {elapsed:.1f}s"
    html = out.read_text()
    assert html.count('<tbody class="test"') == 50
    assert raw > size / 2  # the series really are downsampled, not copied


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "report.html"
    code = cli.main([str(DATA / "run.json"), "-o", str(out),
                     "--comparison", str(DATA / "comparison.json")])
    assert code == 0, capsys.readouterr().err
    assert out.exists() and "Against the baseline" in out.read_text()
    assert "wrote" in capsys.readouterr().out


def test_cli_compares_against_a_baseline(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code = cli.main([str(DATA / "run.json"), "-o", str(out), "--baseline",
                     str(DATA / "baseline.json")])
    assert code == 0
    html = out.read_text()
    assert 'id="comparison"' in html and "test_realistic[2]" in html


def test_cli_reports_bad_input_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "pytest-minigram/run", "version": 7}))
    assert cli.main([str(bad), "-o", str(tmp_path / "x.html")]) == 2
    assert "unsupported results file version 7" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.html")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_the_stage_comparison_names_its_test_and_offers_the_others(
        golden: dict[str, Any]) -> None:
    html = render_runs([golden["run"]])
    section = html[html.index('id="stage-comparison-card"'):html.index('class="charts"')]
    assert '<h3 class="measured-by"><code title="tests/perf/test_realistic.py::test_realistic">'\
        'test_realistic</code>' in section
    options = re.findall(r'<option value="([^"]+)"', section)
    assert options[0] == "tests/perf/test_realistic.py::test_realistic"
    assert set(options[1:]) == {"tests/perf/test_stress.py::test_stress",
                                "tests/perf/test_feed.py::test_feed_rate"}
    tables = re.findall(r'<div class="stage-comparison" data-group="([^"]+)"( hidden)?>', section)
    assert [(g, bool(h)) for g, h in tables][0] == (
        "tests/perf/test_realistic.py::test_realistic", False)
    assert all(h for _, h in tables[1:]) and len(tables) == 3


def test_one_test_on_one_stage_has_no_switcher(golden: dict[str, Any]) -> None:
    run = copy.deepcopy(golden["run"])
    run["tests"] = [t for t in run["tests"] if t["stage"] == "1"]
    html = render_runs([run])
    assert 'id="stage-comparison"' in html and 'id="stage-comparison-test"' not in html
