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

import argparse
import json
import math
import random
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from pytest_minigram.load.result import Result
from pytest_minigram.metrics import bad_direction, fmt_value, percentile_of
from pytest_minigram.storage import BaselineError, load_run, open_storage

__all__ = [
    "Change",
    "ComparisonReport",
    "GateConfig",
    "TestComparison",
    "Tolerance",
    "cli",
    "compare_results",
    "compare_runs",
    "format_markdown",
    "format_table",
    "mann_whitney_u",
    "bootstrap_floor_test",
    "floor_of",
    "hierarchical_floor_test",
    "parse_tolerances",
    "quantile",
]

DEFAULT_METRICS = ("p50", "p95", "p99", "throughput", "error_rate")
VALID_METRICS = "p<q> (e.g. p50, p95, p99.9), mean, min, max, throughput, error_rate"
VALID_FORMS = ("+10% (relative), +0.5pp (percentage points, error_rate only), "
               "+20ms / +0.02s / +500us (absolute, latency metrics only)")
_PERCENTILE = re.compile(r"^p(\d+(?:[._]\d+)?)$")
_LATENCY = ("mean", "min", "max")
_TOLERANCE = re.compile(
    r"^(?P<metric>[a-z_]+|p\d+(?:[._]\d+)?)\s*:\s*(?P<sign>[+-])?\s*"
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>%|pp|ms|us|s)$"
)
_ABS_UNITS = {"ms": 1e-3, "us": 1e-6, "s": 1.0}


def _kind(metric: str) -> str:
    """``latency``, ``throughput`` or ``error_rate``: the metrics the gate can compare."""
    if metric in _LATENCY or (metric.startswith("p") and percentile_of(metric) is not None):
        return "latency"
    if metric in ("throughput", "error_rate"):
        return metric
    raise ValueError(f"unknown metric {metric!r}; valid metrics: {VALID_METRICS}")


def _bad_direction(metric: str) -> int:
    return bad_direction(metric)


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move in its bad direction before the gate may fail."""

    metric: str
    amount: float  # magnitude: 0.10 for 10%, 0.005 for 0.5pp, 0.02 for 20ms
    relative: bool
    direction: int  # +1: an increase is bad; -1: a decrease is bad
    text: str

    def shift(self, baseline: float, current: float) -> float | None:
        """The move in the bad direction, in this tolerance's unit (None: undefined)."""
        if self.relative:
            if baseline == 0 or not math.isfinite(baseline):
                return math.inf if current * self.direction > 0 else None
            return (current - baseline) / abs(baseline) * self.direction
        return (current - baseline) * self.direction

    def exceeded(self, baseline: float, current: float) -> bool:
        moved = self.shift(baseline, current)
        return moved is not None and moved > self.amount

    def __str__(self) -> str:
        return self.text


def parse_tolerance(text: str) -> Tolerance:
    expr = text.strip()
    m = _TOLERANCE.match(expr)
    if not m:
        raise ValueError(f"invalid tolerance {expr!r}: expected METRIC:CHANGE, e.g. p95:+10%, "
                         f"throughput:-10%, error_rate:+0.5pp; valid metrics: {VALID_METRICS}; "
                         f"valid changes: {VALID_FORMS}")
    metric, sign, unit = m.group("metric"), m.group("sign"), m.group("unit")
    try:
        kind = _kind(metric)
    except ValueError as exc:
        raise ValueError(f"invalid tolerance {expr!r}: {exc}") from None
    bad = _bad_direction(metric)
    direction = bad if sign is None else (1 if sign == "+" else -1)
    if direction != bad:
        word = "an increase" if bad > 0 else "a decrease"
        raise ValueError(f"invalid tolerance {expr!r}: for {metric} {word} is the regression, "
                         f"write {metric}:{'+' if bad > 0 else '-'}{m.group('num')}{unit}")
    number = float(m.group("num"))
    if unit == "%":
        return Tolerance(metric, number / 100, True, direction, expr)
    if unit == "pp":
        if kind != "error_rate":
            raise ValueError(f"invalid tolerance {expr!r}: 'pp' (percentage points) applies to "
                             f"error_rate only; use % for {metric}")
        return Tolerance(metric, number / 100, False, direction, expr)
    if kind != "latency":
        raise ValueError(f"invalid tolerance {expr!r}: {unit!r} is a time; use % for {metric}")
    return Tolerance(metric, number * _ABS_UNITS[unit], False, direction, expr)


def parse_tolerances(spec: str | Iterable[str] | None) -> list[Tolerance]:
    """``"p95:+10%,throughput:-10%"`` (or a list of such strings) -> tolerances."""
    if spec is None:
        return []
    parts = spec.split(",") if isinstance(spec, str) else [
        piece for item in spec for piece in item.split(",")
    ]
    out: dict[str, Tolerance] = {}
    for part in parts:
        if part.strip():
            tol = parse_tolerance(part)
            out[tol.metric] = tol
    return list(out.values())


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """U statistic of ``x`` against ``y`` and the two-sided p-value.

    U counts the pairs with x > y (ties count one half), so ``U / (len(x) * len(y))`` is the
    probability that a value of ``x`` exceeds one of ``y``. The p-value uses the normal
    approximation with tie correction and continuity correction (scipy's
    ``mannwhitneyu(method="asymptotic")``); it is fine from about 8 values per side.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs values on both sides")
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    n = n1 + n2
    rank_x = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        rank_x += avg_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_x - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return u, 1.0
    z = max(abs(u - mu) - 0.5, 0.0) / math.sqrt(var)
    return u, math.erfc(z / math.sqrt(2))


@dataclass(frozen=True)
class GateConfig:
    """The knobs of the significance test (see docs/regression-gate.md)."""

    alpha: float = 0.01  # two-sided bootstrap p-value of the floor shift must be below this
    min_samples: int = 8  # steady-state windows needed on each side
    floor_quantile: float = 0.1  # the floor: this quantile of the windows, on the good side
    resamples: int = 2000  # bootstrap resamples
    seed: int = 0  # the bootstrap's random seed: the same two runs always give the same answer
    min_window_requests: int = 10  # latency windows with fewer requests are too noisy
    skip_ramp_up: bool = True


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


class _Windows:
    """The steady-state one-second rows of a result, per round, with decoded histograms cached.

    A result of one run is one group of windows. A result of several rounds (``concat``, the
    plugin's ``--minigram-rounds``) is one group per round: each round has its own ramp-up and
    its own last, partial second, and may have run on its own server process.
    """

    def __init__(self, result: dict[str, Any], config: GateConfig) -> None:
        workload = result.get("workload") or {}
        ramp = math.ceil(float(workload.get("ramp_up") or 0)) if config.skip_ramp_up else 0
        rounds = result.get("rounds") or [
            {"index": None, "offset": 0, "duration": result.get("duration") or 0}]
        rows = result.get("timeseries") or []
        self.groups: list[list[int]] = []  # indexes into self.rows, one list per round
        self.rows: list[dict[str, Any]] = []
        for info in rounds:
            offset = int(info.get("offset") or 0)
            start = offset + ramp
            end = offset + math.floor(float(info.get("duration") or 0))  # last second: partial
            index = info.get("index")
            group = []
            for row in rows:
                if start <= int(row["t"]) < end and (index is None or row.get("round") == index):
                    group.append(len(self.rows))
                    self.rows.append(row)
            self.groups.append(group)
        self.min_requests = config.min_window_requests
        self._hists: dict[int, HdrHistogram] = {}

    def _hist(self, i: int) -> HdrHistogram | None:
        blob = self.rows[i].get("histogram")
        if not blob:
            return None
        if i not in self._hists:
            self._hists[i] = HdrHistogram.decode(blob)
        return self._hists[i]

    def _sample(self, metric: str, i: int) -> float | None:
        row = self.rows[i]
        kind = _kind(metric)
        if kind == "throughput":
            return float(row["requests"])
        if kind == "error_rate":
            return row["errors"] / row["requests"] if row["requests"] else None
        if row["requests"] < self.min_requests:
            return None
        q = percentile_of(metric)
        hist = self._hist(i)
        if hist is not None and hist.get_total_count():
            if q is not None:
                return hist.get_value_at_percentile(q) / 1e6
            if metric == "mean":
                return hist.get_mean_value() / 1e6
            value = hist.get_min_value() if metric == "min" else hist.get_max_value()
            return value / 1e6
        if q in (50.0, 95.0) and row.get(f"p{q:g}") is not None:
            return float(row[f"p{q:g}"])
        return None

    def grouped(self, metric: str) -> list[list[float]]:
        """The metric's window samples, one list per round (rounds without any left out)."""
        out = []
        for group in self.groups:
            values = [v for v in (self._sample(metric, i) for i in group) if v is not None]
            if values:
                out.append(values)
        return out

    def samples(self, metric: str) -> list[float]:
        return [v for group in self.grouped(metric) for v in group]


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("quantile of no values")
    s = sorted(values)
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return s[-1]
    return s[i] + (s[i + 1] - s[i]) * (pos - i)


def _floor_q(metric: str, config: GateConfig) -> float:
    """Which quantile of the windows estimates the metric's undisturbed value.

    Interference from other tenants only adds latency and only removes throughput, so the
    floor is taken on the good side: a low quantile for latency, a high one for throughput.
    Errors are not what a busy neighbour causes: error_rate uses the median.
    """
    kind = _kind(metric)
    if kind == "latency":
        return config.floor_quantile
    if kind == "throughput":
        return 1 - config.floor_quantile
    return 0.5


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


def floor_of(groups: Sequence[Sequence[float]], q: float) -> float:
    """The floor of windows grouped by round: the median over rounds of each round's ``q``
    quantile (with one round, simply the ``q`` quantile of its windows)."""
    floors = [quantile(g, q) for g in groups]
    return floors[0] if len(floors) == 1 else statistics.median(floors)


def bootstrap_floor_test(xb: Sequence[float], xc: Sequence[float], q: float,
                         shift: Callable[[float, float], float | None], resamples: int,
                         seed: int) -> float:
    """Two-sided bootstrap p-value of ``shift(floor(xb), floor(xc)) != 0``, one run a side.

    Each side's windows are resampled with replacement, ``resamples`` times; the floor is
    the ``q`` quantile. The p-value is twice the smaller share of resampled shifts at or
    beyond zero on either side (percentile bootstrap), with the usual +1 correction so that
    it is never 0.
    """
    return hierarchical_floor_test([xb], [xc], q, shift, resamples, seed)


def hierarchical_floor_test(gb: Sequence[Sequence[float]], gc: Sequence[Sequence[float]],
                            q: float, shift: Callable[[float, float], float | None],
                            resamples: int, seed: int) -> float:
    """:func:`bootstrap_floor_test` for windows grouped by round (a two-level bootstrap).

    Rounds ran on different server processes, and a process's own speed is a source of
    noise of its own: windows of one round are not independent of each other. So each
    resample first draws the rounds with replacement, then the windows within each drawn
    round (Davison & Hinkley 1997, sec. 3.8; Saravanan et al. 2020), and takes
    :func:`floor_of` the result. With one round a side this is exactly the one-level
    bootstrap over windows.
    """
    rng = random.Random(seed)
    above = below = 0

    def draw(groups: Sequence[Sequence[float]]) -> float:
        chosen = groups if len(groups) == 1 else [
            groups[rng.randrange(len(groups))] for _ in groups]
        return floor_of([[g[rng.randrange(len(g))] for _ in g] for g in chosen], q)

    for _ in range(resamples):
        b = draw(gb)
        c = draw(gc)
        moved = shift(b, c)
        if moved is None or moved >= 0:
            above += 1
        if moved is None or moved <= 0:
            below += 1
    return min(1.0, 2 * (min(above, below) + 1) / (resamples + 1))


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
        return ch
    q = _floor_q(metric, config)
    fb, fc = floor_of(gb, q), floor_of(gc, q)
    ch.floor_baseline, ch.floor_current = fb, fc
    ch.floor_change = (fc - fb) / abs(fb) if fb else None
    ch.window_shift = _shift(metric, tol, fb, fc)
    u, _ = mann_whitney_u(xc, xb)
    ch.consistency = u / (len(xc) * len(xb))
    ch.p_value = hierarchical_floor_test(gb, gc, q, lambda x, y: _shift(metric, tol, x, y),
                                         config.resamples, config.seed)
    ch.significant = ch.p_value < config.alpha
    if tol is not None:
        floor_beyond = ch.window_shift is not None and ch.window_shift > tol.amount
        ch.regression = floor_beyond and ch.significant
        if (ch.beyond_tolerance or floor_beyond) and not ch.regression:
            ch.note = ("beyond tolerance but not significant" if not ch.significant
                       else "beyond tolerance as a whole, but the floor of the per-second "
                            "windows did not move beyond it")
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


# --- presentation ---

def _value(metric: str, v: float) -> str:
    return fmt_value(metric, v)


def _change(ch: Change) -> str:
    if _kind(ch.metric) == "error_rate":
        return f"{ch.delta * 100:+.2f}pp"
    if ch.change is None:
        return "n/a" if ch.delta == 0 or not math.isfinite(ch.delta) else "new"
    return f"{ch.change * 100:+.1f}%"


def _floor(ch: Change) -> str:
    if ch.floor_baseline is None or ch.floor_current is None:
        return "n/a"
    if _kind(ch.metric) == "error_rate":
        return f"{(ch.floor_current - ch.floor_baseline) * 100:+.2f}pp"
    return "n/a" if ch.floor_change is None else f"{ch.floor_change * 100:+.1f}%"


def _significance(ch: Change) -> str:
    if ch.p_value is None:
        return f"n/a ({min(ch.n_baseline, ch.n_current)} windows)"
    return f"{'yes' if ch.significant else 'no'} (p={ch.p_value:.3g})"


def _status(ch: Change) -> str:
    if ch.regression:
        return f"REGRESSION ({ch.tolerance})"
    if ch.beyond_tolerance or ch.note.startswith("beyond tolerance"):
        return f"beyond {ch.tolerance}, not confirmed"
    return "ok" if ch.tolerance else ""


def _rows(changes: Sequence[Change]) -> list[list[str]]:
    return [[c.metric, _value(c.metric, c.baseline), _value(c.metric, c.current), _change(c),
             _floor(c), _significance(c), _status(c)] for c in changes]


_HEADER = ["metric", "baseline", "current", "change", "floor", "significant", "gate"]


def format_table(report: ComparisonReport | Sequence[Change]) -> str:
    """A plain-text table per test, with the warnings and skipped tests."""
    if not isinstance(report, ComparisonReport):
        report = ComparisonReport("baseline", [TestComparison("", "", list(report))], [], [])
    lines = [f"WARNING: {w}" for w in report.warnings]
    for comp in report.comparisons:
        if comp.test:
            lines.append(f"{comp.test} (stage {comp.stage})")
        rows = [_HEADER, *_rows(comp.changes)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
        for r in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
                         .rstrip())
        lines += [f"  note: {n}" for n in comp.notes]
        lines += [f"  note: {c.metric}: {c.note}" for c in comp.changes if c.note]
    lines += [f"{t} (stage {s}): skipped, {why}" for t, s, why in report.skipped]
    return "\n".join(lines)


def format_markdown(report: ComparisonReport) -> str:
    """The same content as :func:`format_table`, as Markdown (for $GITHUB_STEP_SUMMARY)."""
    lines = [f"> **Warning:** {w}" for w in report.warnings]
    for comp in report.comparisons:
        lines += ["", f"#### `{comp.test}` (stage {comp.stage})", "",
                  "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in _rows(comp.changes)]
        lines += [f"- {n}" for n in comp.notes]
    lines += [f"- `{t}` (stage {s}): skipped, {why}" for t, s, why in report.skipped]
    return "\n".join(lines).lstrip("\n") + "\n"


# --- python -m pytest_minigram compare ---

def _load(ref: str, storage: str | None) -> dict[str, Any]:
    if storage is None:
        return load_run(ref)
    st = open_storage(storage)
    try:
        return st.load(ref)
    finally:
        st.close()


def cli(argv: list[str] | None = None) -> int:
    """Exit 0: no regression; 1: a regression; 2: usage error or unusable file."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_minigram compare",
        description="Compare two saved pytest-minigram runs without running tests",
    )
    parser.add_argument("baseline", help="Baseline results file (or run name with --storage)")
    parser.add_argument("current", help="Current results file (or run name with --storage)")
    parser.add_argument("--fail", metavar="EXPR", action="append", default=[],
                        help="Tolerances, e.g. p95:+10%%,throughput:-10%%,error_rate:+0.5pp")
    parser.add_argument("--metrics", metavar="LIST", default=None,
                        help=f"Metrics to show (default: {','.join(DEFAULT_METRICS)})")
    parser.add_argument("--storage", metavar="DIR|URL", default=None,
                        help="Resolve the two runs ('latest', a number, a name) in this storage")
    parser.add_argument("--alpha", type=float, default=GateConfig.alpha,
                        help="Significance level of the bootstrap test on the floor shift")
    parser.add_argument("--min-samples", type=int, default=GateConfig.min_samples,
                        help="Steady-state one-second windows needed on each side")
    parser.add_argument("--json", action="store_true", help="Print the comparison as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        tolerances = parse_tolerances(args.fail)
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] \
            if args.metrics else None
        for m in metrics or ():
            _kind(m)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        baseline, current = _load(args.baseline, args.storage), _load(args.current, args.storage)
        report = compare_runs(
            baseline, current, tolerances, metrics=metrics,
            config=GateConfig(alpha=args.alpha, min_samples=args.min_samples),
            baseline_source=args.baseline,
        )
    except BaselineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, TypeError) as exc:
        print(f"error: cannot compare {args.baseline} with {args.current}: {exc}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_table(report))
        for comp in report.comparisons:
            for ch in comp.regressions:
                print(f"REGRESSION: {comp.test} (stage {comp.stage}): {ch.metric} "
                      f"{_change(ch)} beyond {ch.tolerance}, p={ch.p_value:.3g}",
                      file=sys.stderr)
    return 1 if report.has_regression else 0
