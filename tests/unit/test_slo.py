from __future__ import annotations

import math

import pytest

from pytest_minigram.slo import (
    Outcome,
    SLOViolation,
    Threshold,
    ThresholdError,
    check,
    evaluate,
    explain,
    parse,
    parse_all,
)


class FakeResult:
    """Stands in for load.Result: metric values per (action, name), KeyError when missing."""

    def __init__(
        self, total: dict[str, float], actions: dict[str, dict[str, float]] | None = None
    ) -> None:
        self.total = total
        self.actions = actions or {}
        self.calls: list[tuple[str, str | None]] = []

    def metric(self, name: str, action: str | None = None) -> float:
        self.calls.append((name, action))
        if action is None:
            return self.total[name]
        if action not in self.actions:
            raise KeyError(action)
        return self.actions[action][name]


# ---------------------------------------------------------------- parsing, good input


@pytest.mark.parametrize(
    ("expr", "action", "metric", "op", "value"),
    [
        ("p95 < 500ms", None, "p95", "<", 0.5),
        ("feed.p(99.9) < 100ms", "feed", "p99.9", "<", 0.1),
        ("feed.p99.9 < 100ms", "feed", "p99.9", "<", 0.1),
        ("p(99.9)<100ms", None, "p99.9", "<", 0.1),
        ("p( 99.9 ) < 100ms", None, "p99.9", "<", 0.1),
        ("p(95) <= 1s", None, "p95", "<=", 1.0),
        ("p99.0 < 2s", None, "p99", "<", 2.0),
        ("p50 < 250us", None, "p50", "<", 0.00025),
        ("p50 < 250µs", None, "p50", "<", 0.00025),
        ("p50 < 250μs", None, "p50", "<", 0.00025),
        ("max < 1m", None, "max", "<", 60.0),
        ("max < 1.5 s", None, "max", "<", 1.5),
        ("med < 20ms", None, "p50", "<", 0.02),
        ("avg < 20", None, "mean", "<", 0.02),  # bare latency number: milliseconds, like k6
        ("mean < .5s", None, "mean", "<", 0.5),
        ("min >= 0", None, "min", ">=", 0.0),
        ("error_rate < 1%", None, "error_rate", "<", 0.01),
        ("error_rate < 0.01", None, "error_rate", "<", 0.01),  # bare rate: a fraction
        ("error_rate == 0", None, "error_rate", "==", 0.0),
        ("apdex > 0.85", None, "apdex", ">", 0.85),
        ("apdex > 85%", None, "apdex", ">", 0.85),
        ("throughput > 100", None, "throughput", ">", 100.0),
        ("throughput > 100/s", None, "throughput", ">", 100.0),
        ("rps >= 100 rps", None, "throughput", ">=", 100.0),
        ("count > 1000", None, "count", ">", 1000.0),
        ("errors != 3", None, "errors", "!=", 3.0),
        ("like_photo.errors == 0", "like_photo", "errors", "==", 0.0),
        ("upload-photo.p95 < 2s", "upload-photo", "p95", "<", 2.0),
        ("  feed.apdex > 0.9  ", "feed", "apdex", ">", 0.9),
        ("P95 < 1e3ms", None, "p95", "<", 1.0),
    ],
)
def test_parse_good(expr: str, action: str | None, metric: str, op: str, value: float) -> None:
    t = parse(expr)
    assert (t.action, t.metric, t.op) == (action, metric, op)
    assert t.value == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert t.text == expr.strip()


def test_threshold_shape_from_the_brief() -> None:
    t = parse("feed.p(99.9) < 100ms")
    assert t == Threshold(
        action="feed", metric="p99.9", op="<", value=0.1, text="feed.p(99.9) < 100ms", unit="ms"
    )
    assert t.subject == "feed.p99.9"
    assert str(t) == "feed.p(99.9) < 100ms"


# ---------------------------------------------------------------- parsing, bad input


@pytest.mark.parametrize(
    ("expr", "fragments"),
    [
        ("", ["empty threshold"]),
        ("p95 500ms", ["no comparison operator", "<", "<=", "!="]),
        ("p95 = 500ms", ["unknown operator '='"]),
        ("p95 => 500ms", ["more than one comparison operator"]),
        ("< 500ms", ["missing metric"]),
        ("latency < 500ms", ["unknown metric 'latency'", "error_rate", "p(NN.N)", "apdex"]),
        ("feed.latency < 5", ["unknown metric 'latency'"]),
        ("p95 < fast", ["expected a non-negative number", "'fast'", "units us, µs, ms, s, m"]),
        ("p95 < -5ms", ["non-negative number"]),
        ("p95 <", ["non-negative number"]),
        ("p95 < 5 parsecs", ["unit 'parsecs' is not valid for p95", "ms", "milliseconds"]),
        ("p95 < 5%", ["unit '%' is not valid for p95"]),
        ("error_rate < 5ms", ["unit 'ms' is not valid for error_rate", "%", "fraction"]),
        ("throughput > 5ms", ["unit 'ms' is not valid for throughput", "/s", "rps"]),
        ("count > 5%", ["unit '%' is not valid for count", "no unit"]),
        ("p(abc) < 5ms", ["bad percentile", "p(NN.N)"]),
        ("p(101) < 5ms", ["between 0 and 100"]),
        ("p100.5 < 5ms", ["between 0 and 100"]),
        ("feed..p95 < 5ms", ["cannot read 'feed..p95'"]),
        ("1feed.p95 < 5ms", ["cannot read"]),
    ],
)
def test_parse_bad(expr: str, fragments: list[str]) -> None:
    with pytest.raises(ThresholdError) as info:
        parse(expr)
    message = str(info.value)
    if expr.strip():
        assert repr(expr.strip()) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_threshold_error_is_a_value_error() -> None:
    assert issubclass(ThresholdError, ValueError)
    assert issubclass(SLOViolation, AssertionError)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ThresholdError, match="expected a string"):
        parse(42)  # type: ignore[arg-type]


def test_parse_all_accepts_lists_separators_and_thresholds() -> None:
    pre = parse("count > 1")
    got = parse_all(["p95 < 1s, error_rate < 1%", "apdex > 0.9;\nrps > 5", pre])
    assert [t.text for t in got] == [
        "p95 < 1s",
        "error_rate < 1%",
        "apdex > 0.9",
        "rps > 5",
        "count > 1",
    ]
    assert parse_all("p95 < 1s") == [parse("p95 < 1s")]
    assert parse_all(pre) == [pre]


def test_parse_all_reports_every_bad_expression() -> None:
    with pytest.raises(ThresholdError) as info:
        parse_all(["p95 < 1s", "latency < 5", "error_rate < 5ms"])
    message = str(info.value)
    assert message.startswith("2 malformed thresholds")
    assert "'latency < 5'" in message and "'error_rate < 5ms'" in message


# ---------------------------------------------------------------- comparisons


@pytest.mark.parametrize(
    ("expr", "measured", "passed"),
    [
        ("p95 < 500ms", 0.4999, True),
        ("p95 < 500ms", 0.5, False),
        ("p95 <= 500ms", 0.5, True),
        ("p95 <= 500ms", 0.5001, False),
        ("p95 < 100ms", 0.1, False),  # 100 ms == 0.1 s despite float conversion
        ("p95 <= 100ms", 0.1, True),
        ("p95 <= 0.3s", 0.30000000000000004, True),  # float noise is not a violation
        ("apdex > 0.85", 0.85, False),
        ("apdex >= 0.85", 0.85, True),
        ("apdex > 0.85", 0.8501, True),
        ("error_rate < 1%", 0.0099, True),
        ("error_rate < 1%", 0.01, False),
        ("error_rate == 0", 0.0, True),
        ("error_rate != 0", 0.0, False),
        ("count == 1000", 1000.0, True),
        ("count != 1000", 999.0, True),
        ("rps >= 100", 99.99, False),
        ("max < 1m", 59.9, True),
        ("p50 < 250us", 0.00025, False),
    ],
)
def test_boundary_comparisons(expr: str, measured: float, passed: bool) -> None:
    t = parse(expr)
    result = FakeResult({t.metric: measured})
    [outcome] = evaluate(result, [expr])
    assert outcome.passed is passed
    assert outcome.measured == measured


def test_evaluate_passes_action_and_canonical_metric_to_result() -> None:
    result = FakeResult({"throughput": 120.0}, {"feed": {"p99.9": 0.05, "p50": 0.01}})
    outcomes = evaluate(result, ["feed.p(99.9) < 100ms", "feed.med < 5ms", "rps > 100"])
    assert result.calls == [("p99.9", "feed"), ("p50", "feed"), ("throughput", None)]
    assert [o.passed for o in outcomes] == [True, False, True]


def test_action_without_samples_is_a_failed_outcome_not_a_crash() -> None:
    result = FakeResult({"p95": 0.1})
    [outcome] = evaluate(result, ["like.p95 < 1s"])
    assert outcome == Outcome(
        parse("like.p95 < 1s"), None, False, "no requests recorded for action 'like'"
    )


def test_missing_total_metric_and_nan_are_failures() -> None:
    result = FakeResult({"p95": math.nan})
    nan, missing = evaluate(result, ["p95 < 1s", "apdex > 0.5"])
    assert not nan.passed and nan.measured is None and "not a number" in nan.note
    assert not missing.passed and missing.measured is None
    assert "metric 'apdex' is not available" in missing.note


def test_malformed_expression_raises_before_any_measurement() -> None:
    result = FakeResult({"p95": 0.1})
    with pytest.raises(ThresholdError):
        evaluate(result, ["p95 < 1s", "p95 < 1 lightyear"])
    assert result.calls == []


# ---------------------------------------------------------------- check and explain


def test_check_returns_outcomes_when_everything_passes() -> None:
    result = FakeResult({"error_rate": 0.001, "p95": 0.2, "apdex": 0.95})
    outcomes = check(result, ["error_rate < 1%", "p95 < 500ms", "apdex > 0.85"], stage="2")
    assert all(o.passed for o in outcomes) and len(outcomes) == 3


def test_check_lists_every_violation_with_measured_limit_and_stage() -> None:
    result = FakeResult(
        {"error_rate": 0.032, "p95": 0.6124, "apdex": 0.91, "throughput": 87.5},
        {"feed": {"p99": 0.25}},
    )
    exprs = ["error_rate < 1%", "p95 < 500ms", "apdex > 0.85", "rps > 100/s", "feed.p99 < 0.2s"]
    with pytest.raises(SLOViolation) as info:
        check(result, exprs, stage="1.5")
    err = info.value
    message = str(err)
    assert message.splitlines()[0] == "SLO violated at stage 1.5: 4 of 5 thresholds failed"
    assert "FAIL  error_rate < 1%: measured 3.2%, limit < 1%" in message
    assert "FAIL  p95 < 500ms: measured 612.4ms, limit < 500ms" in message
    assert "FAIL  rps > 100/s: measured 87.5/s, limit > 100/s" in message
    assert "FAIL  feed.p99 < 0.2s: measured 0.25s, limit < 0.2s" in message
    assert "pass  apdex > 0.85: measured 0.91, limit > 0.85" in message
    assert [o.threshold.text for o in err.failed] == [
        "error_rate < 1%",
        "p95 < 500ms",
        "rps > 100/s",
        "feed.p99 < 0.2s",
    ]
    assert err.stage == "1.5"


def test_check_reports_missing_action_in_message() -> None:
    result = FakeResult({"p95": 0.1})
    with pytest.raises(SLOViolation, match="no requests recorded for action 'feed'"):
        check(result, "feed.p95 < 1s")


@pytest.mark.parametrize(
    ("expr", "measured", "shown"),
    [
        ("p95 < 500", 0.5123, "512.3ms"),  # bare latency shown in milliseconds
        ("error_rate < 0.01", 0.0321, "0.0321"),  # bare rate stays a fraction
        ("p50 < 300us", 0.000412, "412us"),
        ("p50 < 300µs", 0.000412, "412µs"),
        ("max < 2m", 150.0, "2.5m"),
        ("rps > 10 rps", 7.25, "7.25 rps"),
        ("throughput > 10", 7.25, "7.25/s"),
        ("count > 10", 7.0, "7"),
    ],
)
def test_measured_values_use_the_unit_the_user_wrote(
    expr: str, measured: float, shown: str
) -> None:
    t = parse(expr)
    [outcome] = evaluate(FakeResult({t.metric: measured}), [expr])
    assert f"measured {shown}," in outcome.describe()


def test_explain_without_stage_and_all_passed() -> None:
    outcomes = evaluate(FakeResult({"p95": 0.1}), ["p95 < 1s"])
    text = explain(outcomes)
    assert text.splitlines() == [
        "SLO met: all 1 thresholds passed",
        "  pass  p95 < 1s: measured 0.1s, limit < 1s",
    ]


def test_against_a_real_result_from_the_engine() -> None:
    """Contract check with load.Result.metric (names, units, KeyError for a silent action)."""
    from pytest_minigram.load.recorder import Recorder

    rec = Recorder(apdex_t=0.5)
    for i in range(100):
        rec.record("feed", latency=0.010 + i * 0.001, lag=0.0, failed=i < 2)
    result = rec.result(
        duration=10.0, workload={"model": "closed"}, labels={}, generator={}, interrupted=False
    )
    outcomes = evaluate(
        result,
        ["count == 100", "errors == 2", "error_rate <= 2%", "rps == 10/s", "feed.p(99.9) < 200ms",
         "med < 61ms", "apdex > 0.9", "like.p95 < 1s"],
    )
    assert [o.passed for o in outcomes] == [True, True, True, True, True, True, True, False]
    assert outcomes[-1].note == "no requests recorded for action 'like'"
