"""The report's context dict and findings, on the golden runs in data/report/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.report import fmt, series
from pytest_minigram.report.context import (
    ReportInputError,
    build_context,
    coerce_run,
    group_of,
)
from pytest_minigram.report.findings import error_cause

DATA = Path(__file__).parent / "data" / "report"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return {"run": _load("run.json"), "baseline": _load("baseline.json"),
            "comparison": _load("comparison.json")}


@pytest.fixture(scope="module")
def ctx(golden: dict[str, Any]) -> dict[str, Any]:
    return build_context([golden["run"]], golden["baseline"], golden["comparison"])


def _row(ctx: dict[str, Any], key: str) -> dict[str, Any]:
    return next(r for r in ctx["overview"]["rows"] if r["key"] == key)


def test_stages_are_ordered_numerically_and_grouped_without_stage(ctx: dict[str, Any]) -> None:
    assert ctx["stages"] == ["1", "1.5", "2"]
    assert ctx["summary"] == {"passed": 8, "failed": 4, "error": 0, "total": 12}
    names = [t["name"] for t in ctx["tests"]]
    assert names == ["test_breaking_point", "test_feed_rate", "test_realistic", "test_stress"]
    assert group_of("tests/x.py::test_y[1.5-50]", "1.5") == "tests/x.py::test_y[50]"
    assert group_of("tests/x.py::test_y[2]", "2") == "tests/x.py::test_y"


def test_overview_compares_the_closed_load_test_across_stages(ctx: dict[str, Any]) -> None:
    ov = ctx["overview"]
    assert ov["group"] == "tests/perf/test_realistic.py::test_realistic"
    assert ov["workload"] == "20 users for 30 s"
    users = _row(ctx, "max_users")
    assert [c["text"] for c in users["cells"]] == [
        "6 users (4–8)", "42 users (38–46)", "115 users (105–125)"]
    assert users["overall"] == {"text": "19× better", "tone": "good"}
    p95 = _row(ctx, "p95")
    assert [c["text"] for c in p95["cells"]] == ["2.08 s", "117 ms", "77.2 ms"]
    assert p95["cells"][1]["ratio"] == {"text": "18× better", "tone": "good"}
    errors = _row(ctx, "error_rate")
    assert [c["text"] for c in errors["cells"]] == ["56%", "0%", "0%"]
    assert errors["cells"][1]["ratio"]["text"] == "to 0"
    assert _row(ctx, "apdex")["cells"][0]["text"] == "0.31 (T=500 ms)"
    assert [c["text"] for c in _row(ctx, "cpu_per_request")["cells"]] == [
        "12.4 ms", "3.52 ms", "2.48 ms"]


def test_findings_are_computed_from_the_data(ctx: dict[str, Any]) -> None:
    texts = [f["text"] for f in ctx["findings"]]
    assert ("stage 1: 56% of requests failed with 503 database is locked in test_realistic[1] "
            "at 20 users") in texts
    assert ("register and login are bound by password hashing in stage 1.5 and 2: 58 ms of "
            "61 ms per request on average (stage 2)") in texts
    assert "stage 2 holds 19.2× the users of stage 1 within its SLOs (115 vs 6 users)" in texts
    assert any(t.startswith("stage 1: errors pass 5% at ~13 users") for t in texts)
    assert any(t.startswith("stage 1: throughput levels off at ~25.0 req/s") for t in texts)
    assert texts[0].startswith("1 significant regression against the baseline; largest: "
                               "test_stress[2] error_rate +8.7%")


def test_findings_follow_the_numbers_not_a_script(golden: dict[str, Any]) -> None:
    run = copy.deepcopy(golden["run"])
    for t in run["tests"]:  # hashing becomes cheap: the "bound by hashing" finding goes away
        for comps in t["result"]["server_timing"].values():
            if "hash" in comps:
                comps["hash"]["total"] /= 100
    texts = [f["text"] for f in build_context([run])["findings"]]
    assert not any("password hashing" in t for t in texts)
    assert not any("baseline" in t for t in texts)


def test_warnings_cover_saturation_rate_and_fingerprint(golden: dict[str, Any],
                                                        ctx: dict[str, Any]) -> None:
    kinds = [(w["kind"], w["test"]) for w in ctx["warnings"]]
    assert ("generator", "tests/perf/test_stress.py::test_stress[2]") in kinds
    assert ("rate", "tests/perf/test_feed.py::test_feed_rate[1]") in kinds
    assert not any(k == "fingerprint" for k, _ in kinds)
    rate = next(w["text"] for w in ctx["warnings"] if w["test"].endswith("test_feed_rate[1]"))
    assert "23.8 of 60.0 iterations/s, 724 dropped iterations" in rate
    other = copy.deepcopy(golden["baseline"])
    other["environment"]["fingerprint"] = "0000aaaa0000aaaa"
    warned = build_context([golden["run"]], other)["warnings"]
    assert any(w["kind"] == "fingerprint" and "0000aaaa0000aaaa" in w["text"] for w in warned)


def test_comparison_rows_are_coloured_by_significance(ctx: dict[str, Any]) -> None:
    rows = ctx["comparison"]
    assert [(r["name"], r["metric"], r["status"]) for r in rows] == [
        ("test_stress[2]", "error_rate", "regression"),
        ("test_realistic[2]", "p95", "improvement"),
        ("test_feed_rate[2]", "p99", "noise"),
        ("test_realistic[2]", "throughput", "noise")]
    assert rows[0]["change"] == "+8.7%"


def test_compare_report_dict_is_flattened(golden: dict[str, Any]) -> None:
    report = {"baseline": "b.json", "regression": True, "warnings": ["workload differs"],
              "tests": [{"test": "tests/perf/test_realistic.py::test_realistic", "stage": "2",
                         "changes": [{"metric": "p95", "baseline": 0.05, "current": 0.1,
                                      "change": 1.0, "significant": True,
                                      "regression": True}]}]}
    ctx = build_context([golden["run"]], golden["baseline"], report)
    assert [(r["name"], r["status"]) for r in ctx["comparison"]] == [
        ("test_realistic · stage 2", "regression")]
    assert {"kind": "compare", "test": None, "text": "workload differs"} in ctx["warnings"]


def test_charts_hold_downsampled_series(ctx: dict[str, Any]) -> None:
    ov = ctx["charts"]["overview"]
    assert set(ov["timeseries"]) == {"1", "1.5", "2"}
    assert len(ov["timeseries"]["1"]["t"]) == 30
    dist = ov["distribution"]["2"]
    assert dist[0][0] == 1.0 and dist[-1][1] >= dist[0][1]
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(dist, dist[1:], strict=False))
    assert ov["actions"]["labels"] == ["register", "login", "feed", "like", "follow", "upload"]
    st = ov["server_timing"]["2"]["register"]
    assert list(st) == ["db", "cache", "hash", "app"] and 55 < st["hash"] < 62
    errs = ov["errors_vs_users"]["1"]
    assert errs[0]["error_rate"] < 0.05 < errs[-1]["error_rate"]


def test_histogram_fallback_matches_derived_keys(golden: dict[str, Any]) -> None:
    total = golden["run"]["tests"][0]["result"]["total"]
    bare = {k: v for k, v in total.items() if k in ("count", "errors", "histogram", "apdex")}
    for q in (50.0, 95.0, 99.0):
        assert series.percentile(bare, q) == pytest.approx(series.percentile(total, q), rel=1e-3)
    assert series.mean(bare) == pytest.approx(total["mean"], rel=1e-3)


def test_downsample_keeps_rates_exact_and_spikes_visible() -> None:
    rows = [{"t": t, "requests": 10, "errors": 1 if t == 3 else 0, "p50": 0.01,
             "p95": 0.5 if t == 3 else 0.02, "users": t} for t in range(10)]
    out = series.downsample(rows, max_points=5)
    assert out["t"] == [0, 2, 4, 6, 8]
    assert out["rps"] == [10.0] * 5
    assert out["error_rate"][1] == 0.05 and out["p95"][1] == 500.0 and out["users"][1] == 3


def test_inputs_are_checked_with_clear_errors(golden: dict[str, Any]) -> None:
    with pytest.raises(ReportInputError, match="not a pytest-minigram run file"):
        build_context([{"schema": "something-else"}])
    with pytest.raises(ReportInputError, match="no run given"):
        build_context([])
    bare = golden["run"]["tests"][0]["result"]
    run = coerce_run(bare, "r.json")
    assert run["tests"][0]["test"] == "tests/perf/test_realistic.py::test_realistic[1]"
    errored = copy.deepcopy(golden["run"])
    errored["tests"][0].update(result=None, verdict="error")
    ctx = build_context([errored])
    assert ctx["summary"]["error"] == 1
    assert any(w["kind"] == "error" for w in ctx["warnings"])


def test_build_context_does_not_mutate_inputs(golden: dict[str, Any]) -> None:
    before = copy.deepcopy(golden)
    build_context([golden["run"]], golden["baseline"], golden["comparison"])
    assert golden == before


def test_formatting() -> None:
    assert fmt.seconds(0.0772) == "77.2 ms" and fmt.seconds(2.08) == "2.08 s"
    assert fmt.seconds(0.00005) == "50 µs"
    assert fmt.percent(0.05) == "5%" and fmt.percent(0.0123) == "1.2%"
    assert fmt.ratio(10, 20, higher_is_better=True) == {"text": "2.0× better", "tone": "good"}
    assert fmt.ratio(0.1, 0.2, higher_is_better=False) == {"text": "2.0× worse", "tone": "bad"}
    assert fmt.ratio(0.0, 0.2, higher_is_better=False) == {"text": "from 0", "tone": "bad"}
    assert fmt.ratio(1.0, 1.01, higher_is_better=True)["text"] == "≈ same"
    assert error_cause({"status:503": {"count": 3, "example":
                                       'POST /x -> 503 {"error": "database_locked"}'},
                        "timeout": {"count": 1}}) == "503 database locked"
    assert error_cause({"timeout": {"count": 2, "example": "..."}}) == "timeouts"


def test_server_timing_leaves_out_the_inclusive_total() -> None:
    from pytest_minigram.report import series

    comps = {"db": {"count": 10, "total": 0.010}, "app": {"count": 10, "total": 0.005},
             "total": {"count": 10, "total": 0.015}}
    assert series.server_timing({"server_timing": {"feed": comps}}) == {
        "feed": {"db": 1.0, "app": 0.5}}


def test_rate_breaking_points_are_shown() -> None:
    from pytest_minigram.report import fmt

    assert fmt.breaking({"rate": 4.76, "low": 4.76, "high": 5.66}) == "4.76/s (4.76–5.66)"
    assert fmt.breaking({"users": 5, "low": 5, "high": 6}) == "5 users (5–6)"
    assert fmt.breaking({"metric": "rate"}) is None


def test_the_overview_leads_with_the_realistic_journey_not_one_operation(
        golden: dict[str, Any]) -> None:
    """The main job's report led with a one-user 'follow' operation test: a test of the
    realistic journey on as many stages is the one that tells the story."""
    run = copy.deepcopy(golden["run"])
    realistic = next(t for t in run["tests"] if "test_realistic" in t["test"]
                     and t["stage"] == "1")
    operation = copy.deepcopy(realistic)
    operation["test"] = "tests/perf/test_operations.py::test_operation_alone[follow]"
    operation["result"]["labels"]["journey"] = "follow"
    operation["result"]["workload"]["users"] = 1
    operation["result"]["total"]["count"] *= 10  # more requests: the old tie-break
    stage1 = {**run, "tests": [operation, realistic]}
    assert build_context([stage1])["overview"]["group"] == (
        "tests/perf/test_realistic.py::test_realistic")


def _perf_suite_run(golden: dict[str, Any]) -> dict[str, Any]:
    """The perf suite's shapes: ``stage<N>`` ids, a stress ladder recorded as ``#k`` loads (the
    top common level is 50 users), and a one-user load test of the same journey."""
    run = copy.deepcopy(golden["run"])
    template = next(t for t in run["tests"] if "test_realistic" in t["test"]
                    and t["stage"] == "1")
    tests = []
    for stage in ("1", "1.5", "2"):
        for k, users in enumerate((1, 10, 50), start=1):
            t = copy.deepcopy(template)
            t["stage"], t["kind"] = stage, "stress"
            suffix = f"#{k}" if k > 1 else ""
            t["test"] = f"tests/perf/test_stress.py::test_stress_levels[stage{stage}]{suffix}"
            t["result"]["workload"]["users"] = users
            tests.append(t)
        one = copy.deepcopy(template)
        one["stage"] = stage
        one["test"] = ("tests/perf/test_cache_effect.py::"
                       f"test_queries_per_journey[stage{stage}-realistic]#2")
        one["result"]["workload"]["users"] = 1
        tests.append(one)
    return {**run, "tests": tests}


def test_the_harness_stage_ids_group_one_test_across_stages() -> None:
    assert group_of("t.py::test_stress_levels[stage1.5]#5", "1.5") == "t.py::test_stress_levels#5"
    assert group_of("t.py::test_x[stage2-feed]#3", "2") == "t.py::test_x[feed]#3"
    assert group_of("t.py::test_x[stage2-feed]", "2") == "t.py::test_x[feed]"
    assert group_of("t.py::test_x[stage2]", "1") == "t.py::test_x[stage2]"  # not this stage's


def test_the_overview_leads_with_the_top_level_run_on_every_stage(
        golden: dict[str, Any]) -> None:
    ctx = build_context([_perf_suite_run(golden)])
    ov = ctx["overview"]
    assert ov["group"] == "tests/perf/test_stress.py::test_stress_levels#3"
    assert ov["name"] == "test_stress_levels#3" and ov["stages"] == ["1", "1.5", "2"]
    assert ov["workload"].startswith("50 users")
    # every other multi-stage test is one switch away, the lead is not repeated
    others = [o["group"] for o in ctx["overview_others"]]
    assert "tests/perf/test_stress.py::test_stress_levels#3" not in others
    assert set(others) == {"tests/perf/test_stress.py::test_stress_levels",
                           "tests/perf/test_stress.py::test_stress_levels#2",
                           "tests/perf/test_cache_effect.py::test_queries_per_journey[realistic]#2"}
    assert all(len(o["rows"]) and o["stages"] == ["1", "1.5", "2"]
               for o in ctx["overview_others"])


def test_a_ramp_through_many_levels_does_not_lead(golden: dict[str, Any]) -> None:
    """The golden run's stress test ramps to 200 users: no single load, so the 20-user
    realistic load test leads."""
    ctx = build_context([golden["run"]])
    assert ctx["overview"]["group"] == "tests/perf/test_realistic.py::test_realistic"


def test_a_finding_about_4xx_says_it_may_be_the_script(golden: dict[str, Any]) -> None:
    run = copy.deepcopy(golden["run"])
    t = next(t for t in run["tests"] if "test_realistic" in t["test"] and t["stage"] == "1")
    t["result"]["errors"] = {"status:422": {"count": t["result"]["total"]["errors"],
                                            "example": '422 {"detail": "cannot follow yourself"}'}}
    texts = [f["text"] for f in build_context([run])["findings"]]
    finding = next(x for x in texts if x.startswith("stage 1: 56% of requests failed"))
    assert "422 cannot follow yourself in test_realistic[1] at 20 users" in finding
    assert "check that the journey's own requests are valid" in finding


def test_errors_against_users_are_the_lead_journeys_and_skip_the_drain_second(
        golden: dict[str, Any]) -> None:
    """The main job's stress test also runs a 10-user write-contention load: its 503s made
    the finding say errors pass 5 % 'at ~0 users', from the second in which requests in
    flight completed after the users had stopped."""
    from pytest_minigram.report import series

    rows = [{"second": 0, "users": 5, "requests": 50, "errors": 0},
            {"second": 1, "users": 0, "requests": 40, "errors": 30}]
    assert [p["users"] for p in series.by_users([{"timeseries": rows}])] == [5.0]
    ctx = build_context([_perf_suite_run(golden)])
    assert ctx["overview"]["group"].endswith("test_stress_levels#3")
    run = _perf_suite_run(golden)
    write = copy.deepcopy(next(t for t in run["tests"] if t["stage"] == "1"
                               and t["kind"] == "stress"))
    write["test"] += "#4"
    write["result"]["labels"]["journey"] = "write"
    write["result"]["timeseries"] = [{"second": 0, "users": 3, "requests": 500, "errors": 450}]
    run["tests"].append(write)
    points = build_context([run])["charts"]["overview"]["errors_vs_users"].get("1") or []
    assert all(p["users"] != 3.0 for p in points)
