"""The regression gate on golden runs (tests/unit/data/compare, made by make_golden.py)."""

from __future__ import annotations

import copy
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from pytest_minigram.gate import (
    Change,
    GateConfig,
    Tolerance,
    bootstrap_floor_test,
    compare_results,
    compare_runs,
    floor_of,
    format_markdown,
    format_table,
    hierarchical_floor_test,
    mann_whitney_u,
    parse_tolerances,
    quantile,
)
from pytest_minigram.gate.cli import cli
from pytest_minigram.load.result import Result, concat, new_histogram
from pytest_minigram.storage import FileStorage, load_run

DATA = Path(__file__).parent / "data" / "compare"
FEED = "tests/perf/test_feed.py::test_feed"
BROWSE = "tests/perf/test_feed.py::test_browse"
GATE = "p95:+10%,throughput:-10%,error_rate:+0.5pp"


def golden(name: str) -> dict[str, Any]:
    return load_run(DATA / f"{name}.json")


def feed(name: str) -> dict[str, Any]:
    return next(t["result"] for t in golden(name)["tests"] if t["test"] == FEED)


def by_metric(changes: list[Change]) -> dict[str, Change]:
    return {c.metric: c for c in changes}


# --- Mann-Whitney U -------------------------------------------------------------------------


def test_mann_whitney_separated_samples() -> None:
    u, p = mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])
    assert u == 25
    # normal approximation with continuity correction: z = (12.5 - 0.5) / sqrt(25 * 11 / 12)
    assert p == pytest.approx(math.erfc(12 / math.sqrt(25 * 11 / 12) / math.sqrt(2)))
    assert p == pytest.approx(0.01219, abs=1e-4)
    u2, p2 = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u2 == 0 and p2 == pytest.approx(p)


def test_mann_whitney_ties_and_identical_samples() -> None:
    assert mann_whitney_u([1.0] * 10, [1.0] * 12) == (60.0, 1.0)
    u, _ = mann_whitney_u([1, 2, 2, 3], [2, 2, 4])
    assert u == 4.0  # pairs with x > y: 3>2 twice; the four 2-2 ties count one half each
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])


def test_mann_whitney_p_value_is_close_to_the_exact_permutation_test() -> None:
    x = [3.1, 4.0, 4.4, 5.2, 5.9, 6.3, 7.0, 7.7]
    y = [1.2, 2.5, 2.9, 3.3, 3.8, 4.1, 4.9, 5.5]
    u, p = mann_whitney_u(x, y)
    pooled = x + y
    mu = len(x) * len(y) / 2
    extreme = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(x)):
        chosen = [pooled[i] for i in idx]
        rest = [pooled[i] for i in range(len(pooled)) if i not in idx]
        ui = sum(1 for a in chosen for b in rest if a > b)
        extreme += abs(ui - mu) >= abs(u - mu)
        total += 1
    assert p == pytest.approx(extreme / total, abs=0.01)


# --- tolerances -------------------------------------------------------------------------------


def test_parse_tolerances_forms() -> None:
    tols = {t.metric: t for t in parse_tolerances(
        "p95:+10%, throughput:-10%,error_rate:+0.5pp,p99.9:+20ms,mean:5%")}
    assert tols["p95"] == Tolerance("p95", 0.10, True, 1, "p95:+10%")
    assert tols["throughput"].direction == -1 and tols["throughput"].relative
    assert tols["error_rate"].amount == pytest.approx(0.005) and not tols["error_rate"].relative
    assert tols["p99.9"].amount == pytest.approx(0.020) and not tols["p99.9"].relative
    assert tols["mean"].direction == 1  # no sign: the metric's bad direction
    assert parse_tolerances(["p95:+10%", "p50:+5%,p95:+20%"])[0].amount == pytest.approx(0.20)
    assert parse_tolerances(None) == [] and parse_tolerances("") == []


def test_tolerance_exceeded() -> None:
    p95, thr, err = parse_tolerances(GATE)
    assert p95.exceeded(0.100, 0.111) and not p95.exceeded(0.100, 0.109)
    assert not p95.exceeded(0.100, 0.050)  # faster is never a regression
    assert thr.exceeded(100, 89) and not thr.exceeded(100, 91) and not thr.exceeded(100, 200)
    assert err.exceeded(0.0, 0.006) and not err.exceeded(0.01, 0.014)


@pytest.mark.parametrize(("expr", "message"), [
    ("p95", "invalid tolerance 'p95': expected METRIC:CHANGE"),
    ("p95:+10", "invalid tolerance 'p95:+10': expected METRIC:CHANGE"),
    ("latency:+10%", "unknown metric 'latency'; valid metrics: p<q>"),
    ("apdex:-5%", "unknown metric 'apdex'"),
    ("p95:-10%", "for p95 an increase is the regression, write p95:+10%"),
    ("throughput:+10%", "for throughput a decrease is the regression, write throughput:-10%"),
    ("p95:+1pp", "'pp' (percentage points) applies to error_rate only"),
    ("throughput:-5ms", "'ms' is a time; use % for throughput"),
])
def test_bad_tolerances_name_the_expression_and_the_valid_forms(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_tolerances(f"p50:+5%,{expr}")
    assert message in str(info.value)


# --- the maths on golden runs -------------------------------------------------------------------


def test_unchanged_pair_is_not_significant() -> None:
    changes = by_metric(compare_results(feed("baseline"), feed("unchanged"),
                                        parse_tolerances(GATE)))
    for name in ("p50", "p95", "p99", "throughput", "error_rate"):
        assert not changes[name].significant, name
        assert not changes[name].regression, name
    assert abs(changes["p95"].change or 0) < 0.05
    # 25 s run, 2 s ramp-up skipped, last partial second dropped
    assert changes["p95"].n_baseline == changes["p95"].n_current == 23


def test_clear_p95_regression_is_flagged() -> None:
    p95 = by_metric(compare_results(feed("baseline"), feed("regression_p95"),
                                    parse_tolerances(GATE)))["p95"]
    assert p95.change == pytest.approx(0.25, abs=0.03)
    assert p95.beyond_tolerance and p95.significant and p95.regression
    # every one of the 2000 bootstrap resamples moved the floor up: the smallest p-value
    assert p95.p_value == pytest.approx(2 / (GateConfig.resamples + 1))
    assert p95.consistency is not None and p95.consistency > 0.95
    assert p95.floor_change == pytest.approx(0.25, abs=0.05)
    assert p95.window_shift == p95.floor_change  # relative tolerance: the same unit


def test_small_change_is_not_significant() -> None:
    changes = by_metric(compare_results(feed("baseline"), feed("small_change"),
                                        parse_tolerances("p95:+3%,p50:+3%")))
    for name in ("p50", "p95"):
        assert changes[name].beyond_tolerance, name
        assert not changes[name].significant and not changes[name].regression, name
        assert changes[name].note == "beyond tolerance but not significant"


def test_big_change_that_is_not_significant_is_not_a_regression() -> None:
    # two slow seconds out of 23 move the whole-run p95 a lot, the windows hardly at all
    p95 = by_metric(compare_results(feed("baseline"), feed("spike"),
                                    parse_tolerances(GATE)))["p95"]
    assert p95.change is not None and p95.change > 0.3
    assert p95.beyond_tolerance and not p95.significant and not p95.regression


def test_significant_change_within_tolerance_is_not_a_regression() -> None:
    base, shifted = feed("baseline"), feed("shift_5pct")
    p95 = by_metric(compare_results(base, shifted, parse_tolerances(GATE)))["p95"]
    assert p95.significant and not p95.beyond_tolerance and not p95.regression
    # the same data fails a tighter tolerance: tolerance, not significance, let it through
    tight = by_metric(compare_results(base, shifted, parse_tolerances("p95:+3%")))["p95"]
    assert tight.beyond_tolerance and tight.significant and tight.regression


def test_error_rate_regression_in_percentage_points() -> None:
    err = by_metric(compare_results(feed("baseline"), feed("errors"),
                                    parse_tolerances(GATE)))["error_rate"]
    assert err.baseline == 0 and err.current == pytest.approx(0.02, abs=0.001)
    assert err.change is None and err.delta == pytest.approx(err.current)
    assert err.regression
    loose = compare_results(feed("baseline"), feed("errors"), parse_tolerances("error_rate:+5pp"))
    assert not by_metric(loose)["error_rate"].regression


def test_too_few_windows_is_never_significant() -> None:
    short = copy.deepcopy(feed("regression_p95"))
    short["timeseries"] = short["timeseries"][:8]  # 6 steady-state windows
    p95 = by_metric(compare_results(feed("baseline"), short, parse_tolerances(GATE)))["p95"]
    assert p95.beyond_tolerance and not p95.significant and not p95.regression
    assert p95.p_value is None
    assert "too few steady-state windows to test (23 vs 6, need 8 each)" in p95.note
    fewer = compare_results(feed("baseline"), short, parse_tolerances(GATE),
                            config=GateConfig(min_samples=5))
    assert by_metric(fewer)["p95"].regression


def test_windows_without_histograms_fall_back_to_row_percentiles() -> None:
    base, cur = feed("baseline"), feed("regression_p95")
    for res in (base, cur):
        for row in res["timeseries"]:
            row["histogram"] = None
    changes = by_metric(compare_results(base, cur, parse_tolerances("p95:+10%,p99:+10%")))
    assert changes["p95"].regression and changes["p95"].n_current == 23
    assert changes["p99"].n_current == 0 and not changes["p99"].regression


def _blob(hist: HdrHistogram) -> str:
    blob = hist.encode()
    return blob.decode() if isinstance(blob, bytes) else blob


def rescaled(result: dict[str, Any], factors: dict[int, float]) -> dict[str, Any]:
    """``result`` with the latencies of second ``t`` multiplied by ``factors[t]`` (default 1),
    the whole-run histograms rebuilt from the seconds."""
    res = copy.deepcopy(result)
    total = new_histogram()
    for row in res["timeseries"]:
        window = HdrHistogram.decode(row["histogram"])
        scaled = new_histogram()
        for item in window.get_recorded_iterator():
            scaled.record_value(round(item.value_iterated_to * factors.get(row["t"], 1.0)),
                                item.count_added_in_this_iter_step)
        total.add(scaled)
        row["histogram"] = _blob(scaled)
        row["p50"] = scaled.get_value_at_percentile(50) / 1e6
        row["p95"] = scaled.get_value_at_percentile(95) / 1e6
    res["total"]["histogram"] = res["actions"]["feed"]["histogram"] = _blob(total)
    return res


# steady-state seconds 2..24 of the golden runs; a busy neighbour during 14 of the 23
CONTENDED = {t: 1.6 + 0.1 * (t % 5) for t in range(2, 25) if t % 5 != 1 and t % 7 != 3}


def test_quantile_interpolates() -> None:
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.0) == 1.0
    assert quantile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0], 0.1) == 2.0
    assert quantile([7.0], 0.1) == 7.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_bootstrap_floor_test() -> None:
    def rel(b: float, c: float) -> float:
        return (c - b) / b

    same = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9]
    assert bootstrap_floor_test(same, same, 0.1, rel, 500, 0) > 0.5
    slower = [v + 1.0 for v in same]
    # every resampled floor of the slower side is above every one of the other: 2 / (B + 1)
    assert bootstrap_floor_test(same, slower, 0.1, rel, 500, 0) == pytest.approx(2 / 501)
    assert bootstrap_floor_test(slower, same, 0.1, rel, 500, 0) == pytest.approx(2 / 501)
    # deterministic for a seed
    # a floor that depends on one or two fast values is uncertain: not significant
    lucky = [1.0, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2]
    p = bootstrap_floor_test(same, lucky, 0.1, rel, 500, 0)
    assert 0.01 < p < 1
    assert bootstrap_floor_test(same, lucky, 0.1, rel, 500, 0) == p  # deterministic per seed


def test_floor_is_taken_on_the_good_side() -> None:
    base = feed("baseline")
    changes = by_metric(compare_results(base, base, parse_tolerances(GATE)))
    p50, thr, err = changes["p50"], changes["throughput"], changes["error_rate"]
    assert p50.floor_baseline is not None and thr.floor_baseline is not None
    assert p50.floor_baseline < p50.baseline  # a fast second, below the whole-run median
    assert thr.floor_baseline == 200  # a full second of the golden run
    assert err.floor_baseline == 0.0
    assert p50.p_value == 1.0 and p50.floor_change == 0.0 and not p50.significant


def test_contention_in_most_seconds_is_not_a_regression() -> None:
    """A busy neighbour during 14 of 23 seconds: the whole run is far beyond the tolerance
    and Mann-Whitney finds the windows consistently slower, but the undisturbed seconds are
    as fast as the baseline's, so the floor has not moved: no regression."""
    busy = rescaled(feed("unchanged"), CONTENDED)
    changes = by_metric(compare_results(feed("baseline"), busy,
                                        parse_tolerances("p50:+10%,p95:+10%")))
    for name in ("p50", "p95"):
        ch = changes[name]
        assert ch.change is not None and ch.change > 0.3, name
        assert ch.beyond_tolerance and ch.consistency is not None and ch.consistency > 0.7
        assert ch.floor_change is not None and abs(ch.floor_change) < 0.10, name
        assert not ch.regression, name
        assert ch.note.startswith("beyond tolerance"), name
    assert "beyond p50:+10%, not confirmed" in format_table(
        compare_results(feed("baseline"), busy, parse_tolerances("p50:+10%")))


def test_slowdown_under_contention_is_a_regression() -> None:
    """The same busy neighbour, and the code 25 % slower: the floor moves by 25 %."""
    factors = {t: 1.25 * CONTENDED.get(t, 1.0) for t in range(26)}
    busy_and_slow = rescaled(feed("unchanged"), factors)
    changes = by_metric(compare_results(feed("baseline"), busy_and_slow,
                                        parse_tolerances("p50:+10%,p95:+10%")))
    for name in ("p50", "p95"):
        ch = changes[name]
        assert ch.floor_change is not None and 0.15 < ch.floor_change < 0.40, name
        assert ch.significant and ch.regression, name


def test_floor_beyond_tolerance_is_enough_when_the_baseline_was_busy() -> None:
    """A baseline recorded next to a busy neighbour hides a slowdown from the whole-run
    figure; the floor still sees it."""
    busy_base = rescaled(feed("baseline"), CONTENDED)
    slow = rescaled(feed("unchanged"), {t: 1.25 for t in range(26)})
    p50 = by_metric(compare_results(busy_base, slow, parse_tolerances("p50:+10%")))["p50"]
    assert p50.change is not None and p50.change < 0.10 and not p50.beyond_tolerance
    assert p50.regression


# --- whole runs ---------------------------------------------------------------------------------


def test_compare_runs_pairs_tests_and_stages() -> None:
    report = compare_runs(golden("baseline"), golden("regression_p95"), parse_tolerances(GATE))
    assert report.warnings == [] and report.skipped == []
    assert report.has_regression
    feed_cmp, browse_cmp = report.find(FEED, "2"), report.find(BROWSE, "2")
    assert feed_cmp is not None and browse_cmp is not None
    assert [c.metric for c in feed_cmp.regressions] == ["p95"]
    assert browse_cmp.regressions == []
    assert report.find(FEED, "1") is None


def test_baseline_without_the_test_skips_with_a_note() -> None:
    report = compare_runs(golden("missing_test"), golden("regression_p95"),
                          parse_tolerances(GATE), baseline_source="main.json")
    assert report.skipped == [(FEED, "2", "not in the baseline main.json; nothing to compare")]
    assert [c.test for c in report.comparisons] == [BROWSE]
    assert not report.has_regression
    assert f"{FEED} (stage 2): skipped, not in the baseline main.json" in format_table(report)


def test_other_machine_warns() -> None:
    report = compare_runs(golden("baseline"), golden("other_machine"))
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("machine fingerprint differs from the baseline's "
                                         "(0123456789abcdef vs fedcba9876543210)")
    assert format_table(report).startswith("WARNING: machine fingerprint differs")


def test_workload_and_saturation_notes() -> None:
    current = golden("unchanged")
    current["tests"][0]["result"]["workload"]["users"] = 40
    current["tests"][0]["result"]["generator"]["saturated"] = True
    notes = compare_runs(golden("baseline"), current).find(FEED, "2").notes  # type: ignore[union-attr]
    assert notes == ["workload differs from the baseline: users 20 -> 40",
                     "the load generator was saturated in the current run; "
                     "its latencies include generator delay"]


def test_error_verdict_without_result_is_skipped() -> None:
    current = golden("unchanged")
    current["tests"][0].update(result=None, verdict="error")
    report = compare_runs(golden("baseline"), current)
    assert report.skipped == [(FEED, "2", "the current run has no result (verdict error)")]


def test_table_and_markdown() -> None:
    report = compare_runs(golden("baseline"), golden("regression_p95"), parse_tolerances(GATE))
    table = format_table(report)
    lines = table.splitlines()
    assert lines[0] == f"{FEED} (stage 2)"
    assert lines[1].split() == ["metric", "baseline", "current", "change", "floor",
                                "significant", "can", "see", "gate"]
    p95 = next(line for line in lines[2:7] if line.split()[0] == "p95")
    assert "ms" in p95 and "+2" in p95 and "yes (p=" in p95 and "REGRESSION (p95:+10%)" in p95
    assert "error_rate  0.00%" in table and "+0.00pp" in table and "192.0/s" in table
    md = format_markdown(report)
    assert f"#### `{FEED}` (stage 2)" in md
    assert "| metric | baseline | current | change | floor | significant | can see | gate |" in md
    assert "REGRESSION (p95:+10%)" in md
    assert format_table(compare_results(feed("baseline"), feed("unchanged"))).splitlines()[0] \
        .split()[0] == "metric"


def test_report_to_dict_is_json() -> None:
    report = compare_runs(golden("baseline"), golden("errors"), parse_tolerances(GATE))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["regression"] is True
    err = next(c for c in data["tests"][0]["changes"] if c["metric"] == "error_rate")
    assert err["regression"] is True and err["change"] is None


# --- the command --------------------------------------------------------------------------------


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    base = str(DATA / "baseline.json")
    assert cli([base, str(DATA / "unchanged.json"), "--fail", GATE]) == 0
    assert cli([base, str(DATA / "regression_p95.json"), "--fail", GATE]) == 1
    out, err = capsys.readouterr()
    assert f"REGRESSION: {FEED} (stage 2): p95 +2" in err and "beyond p95:+10%" in err
    assert cli([base, str(DATA / "regression_p95.json")]) == 0  # no tolerance, no gate
    assert cli([base, str(DATA / "spike.json"), "--fail", GATE]) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["baseline.json", "nope.json"], "nope.json: results file not found"),
    (["corrupt.json", "unchanged.json"], "corrupt.json: corrupt results file"),
    (["baseline.json", "unchanged.json", "--fail", "p95:+10"], "invalid tolerance 'p95:+10'"),
    (["baseline.json", "unchanged.json", "--metrics", "p95,speed"], "unknown metric 'speed'"),
    (["baseline.json"], "the following arguments are required: current"),
])
def test_cli_usage_and_file_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = [str(DATA / a) if a.endswith(".json") else a for a in args]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_json_and_storage_refs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = FileStorage(tmp_path)  # this machine's id, as the command uses
    st.save(golden("baseline"), name="main")
    st.save(golden("errors"), name="pr")
    assert cli(["main", "latest", "--storage", str(tmp_path), "--fail", GATE, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["baseline"] == "main" and data["regression"] is True
    assert cli(["main", "release", "--storage", str(tmp_path)]) == 2
    assert "no saved run matching 'release'" in capsys.readouterr().err


def test_module_command_via_subprocess() -> None:
    base = str(DATA / "baseline.json")
    cmd = [sys.executable, "-m", "pytest_minigram", "compare", base]
    ok = subprocess.run([*cmd, str(DATA / "unchanged.json"), "--fail", GATE],
                        capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert f"{FEED} (stage 2)" in ok.stdout
    bad = subprocess.run([*cmd, str(DATA / "regression_p95.json"), "--fail", GATE],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "REGRESSION" in bad.stderr
    missing = subprocess.run([*cmd, "/nonexistent/x.json"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: /nonexistent/x.json: results file not found"


# --- rounds on several server processes ----------------------------------------------------------


def rounds_of(name: str, factors: list[float]) -> dict[str, Any]:
    """``len(factors)`` rounds of the golden run, each on a "server process" that is
    ``factors[r]`` times as slow in every second, joined as the plugin joins them."""
    parts = [Result.from_dict(rescaled(feed(name), {t: f for t in range(26)})) for f in factors]
    return concat(parts, [f"http://127.0.0.1:{8000 + r}" for r in range(len(factors))]).to_dict()


# a fresh process's own speed varies by about ±10 % on the development machines
PROCESSES_BASE = [1.0, 1.09, 0.94, 1.03]
PROCESSES_CUR = [1.13, 0.98, 1.07, 1.02]


def test_a_run_on_one_slow_process_looks_like_a_regression() -> None:
    """Why rounds: one process 13 % slower than the baseline's, with no code change, moves
    every window, so a one-process comparison calls it significant."""
    one = by_metric(compare_results(rounds_of("baseline", [1.0]), rounds_of("unchanged", [1.13]),
                                    parse_tolerances("p50:+10%")))["p50"]
    assert one.regression and one.rounds_baseline == one.rounds_current == 1


def test_rounds_on_slower_and_faster_processes_are_not_a_regression() -> None:
    p50 = by_metric(compare_results(rounds_of("baseline", PROCESSES_BASE),
                                    rounds_of("unchanged", PROCESSES_CUR),
                                    parse_tolerances("p50:+10%")))["p50"]
    assert p50.rounds_baseline == p50.rounds_current == 4
    assert p50.floor_change is not None and abs(p50.floor_change) < 0.10  # within the tolerance
    assert not p50.regression


def test_a_slowdown_on_every_process_is_a_regression_across_rounds() -> None:
    slow = [1.25 * f for f in PROCESSES_CUR]
    p50 = by_metric(compare_results(rounds_of("baseline", PROCESSES_BASE),
                                    rounds_of("unchanged", slow),
                                    parse_tolerances("p50:+10%")))["p50"]
    assert p50.floor_change is not None and 0.2 < p50.floor_change < 0.35
    assert p50.significant and p50.regression


def test_each_round_drops_its_own_ramp_up_and_partial_last_second() -> None:
    base = rounds_of("baseline", [1.0, 1.0, 1.0])
    # the golden run: ramp_up 2 s, 25.05 s, rows t = 0..25 -> steady windows t = 2..24
    ch = by_metric(compare_results(base, base, parse_tolerances("p50:+10%")))["p50"]
    assert ch.n_baseline == 3 * 23 and ch.rounds_baseline == 3
    assert not ch.regression and ch.p_value == 1.0


def test_floor_of_rounds_is_the_median_of_the_round_floors() -> None:
    assert floor_of([[1.0, 2.0, 3.0]], 0.0) == 1.0
    assert floor_of([[1.0, 5.0], [2.0, 6.0], [9.0, 9.5]], 0.0) == 2.0
    assert floor_of([[1.0], [3.0]], 0.0) == 2.0


def test_hierarchical_test_with_one_round_a_side_is_the_window_bootstrap() -> None:
    def rel(b: float, c: float) -> float:
        return (c - b) / b

    xb = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9]
    xc = [1.05, 1.3, 1.2, 1.4, 1.6, 1.5, 1.7, 1.9, 1.8, 2.0]
    assert hierarchical_floor_test([xb], [xc], 0.1, rel, 500, 3) == \
        bootstrap_floor_test(xb, xc, 0.1, rel, 500, 3)


def test_hierarchical_test_counts_disagreeing_rounds_as_noise() -> None:
    """Rounds whose levels differ by as much as the two sides do: the windows alone look
    significant, the two-level bootstrap does not."""
    def rel(b: float, c: float) -> float:
        return (c - b) / b

    def rnd(level: float) -> list[float]:
        return [level * (1 + 0.002 * i) for i in range(8)]

    gb = [rnd(1.0), rnd(1.10), rnd(0.97), rnd(1.04)]
    gc = [rnd(1.12), rnd(1.03), rnd(1.16), rnd(1.08)]
    flat = bootstrap_floor_test([v for g in gb for v in g], [v for g in gc for v in g], 0.1, rel,
                                1000, 0)
    nested = hierarchical_floor_test(gb, gc, 0.1, rel, 1000, 0)
    assert nested > 0.1 > flat


def test_errors_in_a_few_seconds_cannot_hide_behind_a_quiet_median() -> None:
    """Errors in 2 seconds of 20+: the median window has none, so the floor cannot move and
    its noise is nil; the whole run is beyond the tolerance. That is not 'ok'."""
    base = feed("baseline")
    cur = copy.deepcopy(feed("unchanged"))
    burst = 0
    for row in cur["timeseries"][3:5]:
        row["errors"] = row["requests"]
        burst += row["requests"]
    cur["total"]["errors"] = cur["total"].get("errors", 0) + burst
    ch = by_metric(compare_results(base, cur, parse_tolerances("error_rate:+0.5pp")))[
        "error_rate"]
    assert ch.beyond_tolerance and not ch.regression
    assert ch.detectable == 0
    assert "did not move while the whole run did" in ch.cannot_judge
