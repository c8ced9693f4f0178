"""pytest-benchmark JSON export, checked with pytest-benchmark's own loader and command."""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.logger import Logger
from pytest_benchmark.storage.file import FileStorage as BenchmarkFileStorage

from pytest_minigram.benchmark_json import benchmark_stats, to_benchmark_json, write_benchmark_json
from pytest_minigram.load.result import new_histogram
from pytest_minigram.storage import load_run

DATA = Path(__file__).parent / "data" / "compare"
BENCH_CLI = Path(sys.executable).with_name("pytest-benchmark")


def _blob(values_us: list[int]) -> str:
    hist = new_histogram()
    for v in values_us:
        hist.record_value(v)
    blob = hist.encode()
    return blob.decode() if isinstance(blob, bytes) else blob


def test_stats_from_histogram_match_the_raw_values() -> None:
    values = [1000 * i for i in range(1, 101)] + [900_000]  # 1..100 ms and one 900 ms outlier
    stats = benchmark_stats(_blob(values))
    secs = [v / 1e6 for v in values]
    assert stats["rounds"] == 101 and stats["iterations"] == 1
    assert stats["min"] == pytest.approx(0.001, rel=1e-3)
    assert stats["max"] == pytest.approx(0.9, rel=1e-3)
    assert stats["mean"] == pytest.approx(statistics.mean(secs), rel=1e-3)
    assert stats["stddev"] == pytest.approx(statistics.pstdev(secs), rel=1e-2)
    assert stats["median"] == pytest.approx(0.051, rel=2e-2)
    assert stats["q1"] == pytest.approx(0.026, rel=5e-2)
    assert stats["q3"] == pytest.approx(0.076, rel=3e-2)
    assert stats["iqr"] == pytest.approx(stats["q3"] - stats["q1"])
    assert stats["iqr_outliers"] == 1  # the 900 ms request
    assert stats["hd15iqr"] == pytest.approx(0.1, rel=1e-3)
    assert stats["ld15iqr"] == pytest.approx(0.001, rel=1e-3)
    assert stats["outliers"] == f"{stats['stddev_outliers']};1"
    assert stats["ops"] == pytest.approx(1 / stats["mean"])
    assert stats["total"] == pytest.approx(stats["mean"] * 101)


def test_empty_histogram_is_refused() -> None:
    with pytest.raises(ValueError, match="no request was recorded"):
        benchmark_stats(_blob([]))


def test_document_shape() -> None:
    run = load_run(DATA / "baseline.json")
    doc = to_benchmark_json(run)
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert doc["commit_info"]["id"] == run["environment"]["git"]["commit"]
    assert doc["commit_info"]["branch"] == "main" and doc["commit_info"]["dirty"] is False
    assert doc["machine_info"]["cpu"]["count"] == 2
    assert doc["machine_info"]["minigram_fingerprint"] == "0123456789abcdef"
    assert doc["datetime"] == run["created_at"]
    names = [b["fullname"] for b in doc["benchmarks"]]
    assert names == ["tests/perf/test_feed.py::test_feed (stage 2)",
                     "tests/perf/test_feed.py::test_browse (stage 2)"]
    feed = doc["benchmarks"][0]
    assert feed["name"] == "test_feed (stage 2)" and feed["group"] == "stage 2"
    assert feed["params"] == {"stage": "2"} and feed["param"] == "2"
    total = run["tests"][0]["result"]["total"]
    assert feed["stats"]["rounds"] == total["count"]
    assert feed["stats"]["mean"] == pytest.approx(total["mean"])
    assert feed["extra_info"]["p95"] == total["p95"]
    assert feed["extra_info"]["throughput"] == total["throughput"]
    assert feed["extra_info"]["verdict"] == "passed"


def test_tests_without_results_are_left_out() -> None:
    run = copy.deepcopy(load_run(DATA / "baseline.json"))
    run["tests"][0].update(result=None, verdict="error")
    assert [b["name"] for b in to_benchmark_json(run)["benchmarks"]] == ["test_browse (stage 2)"]


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    a = write_benchmark_json(load_run(DATA / "baseline.json"), tmp_path / "0001_base.json")
    b = write_benchmark_json(load_run(DATA / "regression_p95.json"), tmp_path / "0002_pr.json")
    return a, b


def test_pytest_benchmark_loader_reads_the_files(two_files: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    storage = BenchmarkFileStorage(tmp_path, logger=Logger(Logger.QUIET))
    loaded = list(storage.load_benchmarks(*(str(p) for p in two_files)))
    # the loader skips files it cannot read, so the count is the real check
    assert len(loaded) == 4
    feed: dict[str, Any] = next(b for b in loaded if b["name"] == "test_feed (stage 2)"
                                and "0002" in b["source"])
    assert feed["mean"] > 0 and feed["ops"] == pytest.approx(1 / feed["mean"])
    assert json.loads(two_files[0].read_text())["version"]


def test_pytest_benchmark_compare_command(two_files: tuple[Path, Path], tmp_path: Path) -> None:
    assert BENCH_CLI.exists(), BENCH_CLI
    proc = subprocess.run(
        [str(BENCH_CLI), "compare", *(str(p) for p in two_files), "--group-by=name",
         "--columns=min,median,mean,max,ops,rounds", f"--csv={tmp_path / 'out.csv'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    feed = [line for line in proc.stdout.splitlines() if line.startswith("test_feed (stage 2)")]
    assert len(feed) == 2
    slower = next(line for line in feed if "0002_pr)" in line)
    assert "(1.25)" in slower  # the golden regression's median, 25% slower
    assert "Failed to load" not in proc.stdout + proc.stderr
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) == 5  # header + 4 benchmarks
