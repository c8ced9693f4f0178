"""The regression gate: compare a run against a baseline, metric by metric.

The method is described in docs/regression-gate.md. In short: the samples are the
steady-state one-second windows of the time series. The gate's estimate of a metric is its
*floor*, a low quantile of the windows (a high one for throughput): on a shared machine a busy
neighbour only ever adds latency, so the undisturbed seconds say what the code costs. A change
is a *regression* only when the floor moved beyond the user's tolerance AND the move is
significant (bootstrap over the windows, p < alpha, with a minimum number of windows). The
whole-run figures and a Mann-Whitney U consistency are reported alongside.
"""


from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_minigram.gate.stats import (
    detectable_shift,
    floor_of,
    floor_shift_test,
    mann_whitney_u,
)
from pytest_minigram.gate.tolerance import DEFAULT_METRICS, Tolerance, _bad_direction, _kind
from pytest_minigram.gate.windows import GateConfig, _floor_q, _Windows
from pytest_minigram.load.result import Result

HOW_TO_SEE_MORE = ("make the load longer (10 s or more of steady load), run more rounds "
                   "(--minigram-rounds), or measure the baseline side by side "
                   "(--minigram-duet / a minigram_baseline_target fixture)")


@dataclass
class Change:
    metric: str
    baseline: float
    current: float
    change: float | None  # relative, (current - baseline) / baseline; None if baseline is 0
    significant: bool
    p_value: float | None
    beyond_tolerance: bool
    regression: bool
    delta: float = 0.0  # current - baseline, in the metric's unit
    consistency: float | None = None  # P(current window > baseline window), Mann-Whitney
    floor_baseline: float | None = None  # the floor of the windows (see GateConfig)
    floor_current: float | None = None
    floor_change: float | None = None  # floor_current / floor_baseline - 1
    window_shift: float | None = None  # shift of the floor, in the tolerance's unit
    n_baseline: int = 0
    n_current: int = 0
    rounds_baseline: int = 1  # rounds with windows (each may have run on its own server)
    rounds_current: int = 1
    tolerance: str | None = None
    note: str = ""
    # the smallest shift of the floor this comparison would detect at its alpha with 90 %
    # power, in the tolerance's unit (relative without one); None when it cannot say
    detectable: float | None = None
    # a gated metric the gate could not judge, and why (empty when it could)
    cannot_judge: str = ""




def _shift(metric: str, tol: Tolerance | None, base: float, cur: float) -> float | None:
    """The move of ``cur`` against ``base`` in the bad direction: the tolerance's unit, or
    relative when there is no tolerance (absolute for error_rate)."""
    if tol is not None:
        return tol.shift(base, cur)
    if _kind(metric) == "error_rate":
        return cur - base
    if base == 0:
        return None
    return (cur - base) / abs(base) * _bad_direction(metric)




def _compare_metric(metric: str, base: Result, cur: Result, wb: _Windows, wc: _Windows,
                    tol: Tolerance | None, config: GateConfig) -> Change:
    b, c = base.metric(metric), cur.metric(metric)
    rel = (c - b) / abs(b) if b and math.isfinite(b) else None
    gb, gc = wb.grouped(metric), wc.grouped(metric)
    xb, xc = [v for g in gb for v in g], [v for g in gc for v in g]
    ch = Change(metric, b, c, rel, False, None, False, False, delta=c - b,
                n_baseline=len(xb), n_current=len(xc),
                rounds_baseline=max(1, len(gb)), rounds_current=max(1, len(gc)),
                tolerance=tol.text if tol else None)
    if tol is not None:
        ch.beyond_tolerance = tol.exceeded(b, c)
    if min(len(xb), len(xc)) < config.min_samples:
        ch.note = (f"too few steady-state windows to test ({len(xb)} vs {len(xc)}, "
                   f"need {config.min_samples} each)")
        if tol is not None:
            ch.cannot_judge = (f"{ch.note}: {HOW_TO_SEE_MORE}")
        return ch
    q = _floor_q(metric, config)
    fb, fc = floor_of(gb, q), floor_of(gc, q)
    ch.floor_baseline, ch.floor_current = fb, fc
    ch.floor_change = (fc - fb) / abs(fb) if fb else None
    ch.window_shift = _shift(metric, tol, fb, fc)
    u, _ = mann_whitney_u(xc, xb)
    ch.consistency = u / (len(xc) * len(xb))
    ch.p_value, se = floor_shift_test(gb, gc, q, lambda x, y: _shift(metric, tol, x, y),
                                      config.resamples, config.seed)
    ch.significant = ch.p_value < config.alpha
    if se is not None:
        ch.detectable = detectable_shift(se, config.alpha)
    if tol is not None:
        floor_beyond = ch.window_shift is not None and ch.window_shift > tol.amount
        ch.regression = floor_beyond and ch.significant
        if (ch.beyond_tolerance or floor_beyond) and not ch.regression:
            ch.note = ("beyond tolerance but not significant" if not ch.significant
                       else "beyond tolerance as a whole, but the floor of the per-second "
                            "windows did not move beyond it")
        if not ch.regression:
            if ch.detectable is None or (ch.detectable == 0 and ch.beyond_tolerance):
                # no measurable noise in the floor while the whole run moved beyond the
                # tolerance: the floor cannot show this change (errors in a few seconds)
                ch.cannot_judge = ("the floor of its windows did not move while the whole run "
                                   f"did: {HOW_TO_SEE_MORE}" if ch.detectable == 0 else
                                   f"the noise of its windows is unknown: {HOW_TO_SEE_MORE}")
            elif ch.detectable > tol.amount:
                ch.cannot_judge = (f"it can see {tol.format_amount(ch.detectable)}, more than "
                                   f"its tolerance {tol}: {HOW_TO_SEE_MORE}")
    return ch


def compare_results(
    baseline: dict[str, Any],
    current: dict[str, Any],
    tolerances: Sequence[Tolerance] = (),
    *,
    metrics: Sequence[str] | None = None,
    config: GateConfig | None = None,
) -> list[Change]:
    """One :class:`Change` per metric: the default metrics plus every tolerance's metric."""
    cfg = config or GateConfig()
    tols = {t.metric: t for t in tolerances}
    names = list(metrics or DEFAULT_METRICS)
    names += [m for m in tols if m not in names]
    base, cur = Result.from_dict(baseline), Result.from_dict(current)
    wb, wc = _Windows(baseline, cfg), _Windows(current, cfg)
    return [_compare_metric(m, base, cur, wb, wc, tols.get(m), cfg) for m in names]


@dataclass
class TestComparison:
    test: str
    stage: str
    changes: list[Change]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]

    @property
    def unjudged(self) -> list[Change]:
        """Gated metrics the gate could not judge (too few windows, or too much noise)."""
        return [c for c in self.changes if c.cannot_judge]


@dataclass
class ComparisonReport:
    baseline_source: str
    comparisons: list[TestComparison]
    skipped: list[tuple[str, str, str]]  # test, stage, why
    warnings: list[str]

    @property
    def has_regression(self) -> bool:
        return any(c.regressions for c in self.comparisons)

    def find(self, test: str, stage: str) -> TestComparison | None:
        return next((c for c in self.comparisons if (c.test, c.stage) == (test, stage)), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_source,
            "regression": self.has_regression,
            "warnings": list(self.warnings),
            "skipped": [{"test": t, "stage": s, "note": n} for t, s, n in self.skipped],
            "tests": [{"test": c.test, "stage": c.stage, "notes": c.notes,
                       "changes": [_finite(asdict(ch)) for ch in c.changes]}
                      for c in self.comparisons],
        }


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in d.items()}


def _machine_summary(env: dict[str, Any]) -> str:
    m = env.get("machine") or {}
    return (f"{m.get('cpu_model', '?')} x{m.get('cpu_count', '?')}, "
            f"{m.get('system', '?')}, Python {m.get('python_version', '?')}")


def _workload_differences(b: dict[str, Any], c: dict[str, Any]) -> list[str]:
    keys = ("model", "users", "rate", "duration", "ramp_up", "stages", "think_time")
    return [f"{k} {b.get(k)!r} -> {c.get(k)!r}" for k in keys if b.get(k) != c.get(k)]


def compare_runs(
    baseline_run: dict[str, Any],
    current_run: dict[str, Any],
    tolerances: Sequence[Tolerance] = (),
    *,
    metrics: Sequence[str] | None = None,
    config: GateConfig | None = None,
    baseline_source: str = "baseline",
) -> ComparisonReport:
    """Compare every test and stage of ``current_run`` with the same one in the baseline."""
    warnings: list[str] = []
    benv, cenv = baseline_run.get("environment") or {}, current_run.get("environment") or {}
    bfp, cfp = benv.get("fingerprint"), cenv.get("fingerprint")
    if bfp != cfp:
        warnings.append(
            f"machine fingerprint differs from the baseline's ({bfp} vs {cfp}): the baseline "
            f"ran on {_machine_summary(benv)}, this run on {_machine_summary(cenv)}; "
            "timings from different machines are not comparable"
        )
    by_key = {(t["test"], t["stage"]): t for t in baseline_run.get("tests", [])}
    comparisons: list[TestComparison] = []
    skipped: list[tuple[str, str, str]] = []
    for entry in current_run.get("tests", []):
        key = (entry["test"], entry["stage"])
        base = by_key.get(key)
        if base is None:
            skipped.append((*key, f"not in the baseline {baseline_source}; nothing to compare"))
            continue
        if base.get("result") is None or entry.get("result") is None:
            which = "baseline" if base.get("result") is None else "current run"
            skipped.append((*key, f"the {which} has no result (verdict error)"))
            continue
        changes = compare_results(base["result"], entry["result"], tolerances,
                                  metrics=metrics, config=config)
        notes = []
        diff = _workload_differences(base["result"].get("workload") or {},
                                     entry["result"].get("workload") or {})
        if diff:
            notes.append("workload differs from the baseline: " + ", ".join(diff))
        for label, res in (("baseline", base["result"]), ("current run", entry["result"])):
            if (res.get("generator") or {}).get("saturated"):
                notes.append(f"the load generator was saturated in the {label}; "
                             "its latencies include generator delay")
        comparisons.append(TestComparison(key[0], key[1], changes, notes))
    return ComparisonReport(baseline_source, comparisons, skipped, warnings)
