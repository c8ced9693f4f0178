"""Run files (+ optional baseline and comparison) -> the report's context dict.

A pure function: inputs are read, never written, and the context holds only new plain
values (strings, numbers, lists, dicts) ready for Jinja and for the JSON the charts read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_minigram.report import fmt, series
from pytest_minigram.report.findings import ResultRow, compute_findings

Json = dict[str, Any]
RUN_SCHEMA = "pytest-minigram/run"
RESULT_SCHEMA = "pytest-minigram/result"
KIND_PREFERENCE = ("load", "stress", "breaking")


class ReportInputError(ValueError):
    """A run file the report cannot read, with what was expected."""


@dataclass(frozen=True)
class Entry:
    id: str
    test: str
    group: str
    stage: str
    kind: str
    verdict: str
    result: Mapping[str, Any]
    slo: Sequence[Mapping[str, Any]]
    breaking_point: Mapping[str, Any] | None

    @property
    def total(self) -> Mapping[str, Any]:
        return self.result.get("total") or {}


def coerce_run(data: Any, source: str = "input") -> Mapping[str, Any]:
    """Accept a run file, or a bare Result (wrapped as a one-test run); reject the rest."""
    if not isinstance(data, Mapping):
        raise ReportInputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema == RESULT_SCHEMA:
        labels = data.get("labels") or {}
        test = {"test": labels.get("test", source), "stage": labels.get("stage", "-"),
                "kind": labels.get("kind", "load"), "result": data, "slo": [],
                "verdict": "passed"}
        return {"schema": RUN_SCHEMA, "version": 1, "created_at": None,
                "environment": {}, "tests": [test]}
    if schema != RUN_SCHEMA:
        raise ReportInputError(
            f"{source}: not a pytest-minigram run file (schema is {schema!r}, expected "
            f"{RUN_SCHEMA!r} or {RESULT_SCHEMA!r})")
    if data.get("version") != 1:
        raise ReportInputError(f"{source}: unsupported run file version {data.get('version')!r}"
                               " (this report reads version 1)")
    if not isinstance(data.get("tests"), list):
        raise ReportInputError(f"{source}: run file has no 'tests' list")
    return data


def stage_key(stage: str) -> tuple[int, float, str]:
    try:
        return (0, float(stage), stage)
    except ValueError:
        return (1, 0.0, stage)


def group_of(test: str, stage: str) -> str:
    """The test id without its stage parameter, the same on every stage.

    test_x[1.5-50] -> test_x[50]; test_x[stage2-feed]#3 -> test_x[feed]#3 (the harness's ids
    are ``stage<N>``; ``#k`` is the k-th load of one test and stays, it is a different level).
    """
    match = re.fullmatch(r"(.*)\[(.*)\](#\d+)?", test)
    if not match:
        return test
    params = match.group(2).split("-")
    parts = [p for p in params if p not in (stage, f"stage{stage}")]
    suffix = match.group(3) or ""
    return (f"{match.group(1)}[{'-'.join(parts)}]" if parts else match.group(1)) + suffix


def short_name(test: str) -> str:
    return test.rsplit("::", 1)[-1]


def _entries(runs: Sequence[Mapping[str, Any]]) -> list[Entry]:
    out: list[Entry] = []
    for r, run in enumerate(runs):
        for i, t in enumerate(run.get("tests") or ()):
            stage = str(t.get("stage", "-"))
            test = str(t.get("test", f"test-{r}-{i}"))
            out.append(Entry(id=f"t{len(out)}", test=test, group=group_of(test, stage),
                             stage=stage, kind=str(t.get("kind") or "load"),
                             verdict=str(t.get("verdict") or "error"),
                             result=t.get("result") or {}, slo=t.get("slo") or [],
                             breaking_point=t.get("breaking_point")))
    return out


def _dig(env: Mapping[str, Any], *paths: str) -> Any:
    for path in paths:
        node: Any = env
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node not in (None, ""):
            return node
    return None


def _stage_configs(run: Mapping[str, Any], env: Mapping[str, Any]) -> dict[str, Json]:
    """{stage: {key: value}}; a flat config is the config of the run's only stage."""
    raw = _dig(env, "stages", "stage_configs", "stage_config") or {}
    if not isinstance(raw, Mapping) or not raw:
        return {}
    if all(isinstance(v, Mapping) for v in raw.values()):
        return {str(k): dict(v) for k, v in raw.items()}
    run_stages = {str(t.get("stage")) for t in run.get("tests") or ()}
    return {run_stages.pop(): dict(raw)} if len(run_stages) == 1 else {}


def environment(run: Mapping[str, Any]) -> Json:
    env = run.get("environment") or {}
    commit = _dig(env, "git.commit", "git_commit", "commit")
    return {
        "commit": str(commit) if commit else None,
        "commit_short": str(commit)[:10] if commit else None,
        "branch": _dig(env, "git.branch", "git_branch", "branch"),
        "dirty": bool(_dig(env, "git.dirty", "git_dirty", "dirty")),
        "cpu_model": _dig(env, "machine.cpu_model", "cpu.model", "cpu_model"),
        "cpu_count": _dig(env, "machine.cpu_count", "cpu.count", "cpu_count"),
        "python": _dig(env, "machine.python_version", "python", "python_version"),
        "platform": _dig(env, "platform", "machine_id"),
        "fingerprint": _dig(env, "fingerprint", "machine.fingerprint", "machine_fingerprint"),
        "packages": {str(k): str(v) for k, v in sorted((_dig(env, "packages") or {}).items())
                     if v is not None},
        "stages": _stage_configs(run, env),
        "created_at": run.get("created_at"),
    }


def _ranked_groups(entries: Sequence[Entry]) -> list[str]:
    """The tests the overview can compare, the one that tells the story first.

    In order: it ran on the most stages; it plays the realistic journey (a whole visit, not
    one operation); it held one load level (a ramp through many levels has no single load to
    compare); it ran the highest level on every stage (users, else arrivals per second), so a
    stress ladder's top common level beats a one-user load test; a load test before a stress
    test at the same load; it made the most requests.
    """
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        if e.kind != "breaking":
            groups.setdefault(e.group, []).append(e)
    def load(e: Entry) -> float:
        value = _dig(e.result, "workload.users") or _dig(e.result, "workload.rate") or 0
        return float(value) if isinstance(value, int | float) else 0.0

    def score(item: tuple[str, list[Entry]]) -> tuple[int, int, int, float, int, int, str]:
        name, members = item
        kinds = {e.kind for e in members}
        pref = min((KIND_PREFERENCE.index(k) for k in kinds if k in KIND_PREFERENCE),
                   default=len(KIND_PREFERENCE))
        realistic = all(_dig(e.result, "labels.journey") == "realistic" for e in members)
        requests = sum(series.count(e.total) for e in members)
        ramp = any(_dig(e.result, "workload.model") == "ramping" for e in members)
        return (-len({e.stage for e in members}), 0 if realistic else 1, 1 if ramp else 0,
                -min(load(e) for e in members), pref, -requests, name)

    return [name for name, _ in sorted(groups.items(), key=score)]


def _measure(e: Entry) -> Json:
    """One result's headline numbers, raw (seconds, fractions) for ratios and findings."""
    res, total = e.result, e.total
    duration = float(res.get("duration") or 0)
    cpu = _dig(res, "server.cpu_seconds")
    n = series.count(total)
    return {
        "count": n, "throughput": series.throughput(total, duration),
        "p50": series.percentile(total, 50.0), "p95": series.percentile(total, 95.0),
        "p99": series.percentile(total, 99.0), "error_rate": series.error_rate(total),
        "apdex": series.apdex(total), "apdex_t": res.get("apdex_t"),
        "cpu_per_request": float(cpu) / n if cpu is not None and n else None,
        "users": _dig(res, "workload.users"), "rate": _dig(res, "workload.rate"),
        "model": _dig(res, "workload.model"), "duration": duration,
    }


# (key, label, unit formatter, higher is better)
OVERVIEW_METRICS: tuple[tuple[str, str, str, bool], ...] = (
    ("max_users", "Max users meeting SLOs", "users", True),
    ("max_rate", "Max arrival rate meeting SLOs", "arrivals", True),
    ("throughput", "Throughput", "rps", True),
    ("p50", "p50 latency", "seconds", False),
    ("p95", "p95 latency", "seconds", False),
    ("p99", "p99 latency", "seconds", False),
    ("error_rate", "Error rate", "fraction", False),
    ("apdex", "Apdex", "apdex", True),
    ("cpu_per_request", "Server CPU per request", "seconds", False),
)


def _overview(entries: Sequence[Entry], stages: Sequence[str], primary: str | None) -> Json:
    by_stage: dict[str, Json] = {}
    for stage in stages:
        m: Json = {}
        hit = [e for e in entries if e.group == primary and e.stage == stage]
        if hit:
            m = _measure(hit[0])
        for metric in ("users", "rate"):
            points = [e.breaking_point for e in entries if e.stage == stage
                      and e.breaking_point and e.breaking_point.get(metric)]
            if points:
                best = max(points, key=lambda bp: float(bp[metric]))
                m[f"max_{metric}"] = float(best[metric])
                m[f"max_{metric}_range"] = (best.get("low"), best.get("high"))
        by_stage[stage] = m
    rows = []
    for key, label, unit, higher in OVERVIEW_METRICS:
        values = [by_stage[s].get(key) for s in stages]
        if all(v is None for v in values):
            continue
        cells = []
        for i, (stage, value) in enumerate(zip(stages, values, strict=True)):
            text = fmt.value(value, unit)
            if key == "apdex" and value is not None and by_stage[stage].get("apdex_t"):
                text += f" (T={fmt.seconds(by_stage[stage]['apdex_t'])})"
            if key in ("max_users", "max_rate") and value is not None:
                low, high = by_stage[stage].get(f"{key}_range", (None, None))
                if low is not None and high is not None:
                    text += f" ({low:g}–{high:g})"
            ratio = fmt.ratio(values[i - 1], value, higher) if i else None
            cells.append({"stage": stage, "value": value, "text": text, "ratio": ratio})
        rows.append({"key": key, "label": label, "cells": cells,
                     "overall": fmt.ratio(values[0], values[-1], higher)
                     if len(stages) > 1 else None})
    workload = next((e.result.get("workload") for e in entries if e.group == primary), None)
    return {"group": primary, "name": short_name(primary) if primary else None,
            "stages": list(stages), "rows": rows, "measures": by_stage,
            "workload": fmt.workload(workload) if workload else None,
            "first": stages[0] if stages else None, "last": stages[-1] if stages else None}


def _test_rows(entries: Sequence[Entry], stages: Sequence[str]) -> list[Json]:
    groups: dict[str, dict[str, Entry]] = {}
    for e in entries:
        groups.setdefault(e.group, {})[e.stage] = e
    rows = []
    for group, members in sorted(groups.items()):
        cells = []
        for stage in stages:
            e = members.get(stage)
            if e is None:
                cells.append(None)
                continue
            m = _measure(e)
            cells.append({
                "id": e.id, "test": e.test, "stage": stage, "verdict": e.verdict,
                "p95": fmt.seconds(m["p95"]), "throughput": fmt.value(m["throughput"], "rps"),
                "error_rate": fmt.value(m["error_rate"], "fraction"),
                "workload": fmt.workload(e.result.get("workload") or {}),
                "slo": [{"threshold": str(s.get("threshold")), "passed": bool(s.get("passed")),
                         "measured": fmt.measured(s.get("measured"), str(s.get("threshold")))}
                        for s in e.slo],
                "breaking_point": fmt.breaking(e.breaking_point),
            })
        kinds = sorted({e.kind for e in members.values()})
        worst = ("error" if any(e.verdict == "error" for e in members.values()) else
                 "failed" if any(e.verdict == "failed" for e in members.values()) else "passed")
        rows.append({"group": group, "name": short_name(group), "kind": ", ".join(kinds),
                     "verdict": worst, "cells": cells})
    return rows


def _actions(entries: Sequence[Entry], stages: Sequence[str], primary: str | None) -> Json:
    per_stage = {e.stage: e for e in entries if e.group == primary}
    names: list[str] = []
    for e in per_stage.values():
        names += [a for a in (e.result.get("actions") or {}) if a not in names]
    rows = []
    for action in names:
        cells = []
        for stage in stages:
            e = per_stage.get(stage)
            stats = (e.result.get("actions") or {}).get(action) if e else None
            if not stats or not series.count(stats):
                cells.append(None)
                continue
            cells.append({"count": series.count(stats), "mean": fmt.seconds(series.mean(stats)),
                          "p95": fmt.seconds(series.percentile(stats, 95.0)),
                          "p95_ms": _ms(series.percentile(stats, 95.0)),
                          "max": fmt.seconds(series.maximum(stats)),
                          "error_rate": fmt.value(series.error_rate(stats), "fraction")})
        rows.append({"action": action, "cells": cells})
    return {"group": primary, "rows": rows}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def _charts(entries: Sequence[Entry], stages: Sequence[str], primary: str | None,
            actions: Json, max_points: int) -> Json:
    per_stage = {e.stage: e for e in entries if e.group == primary}
    # one journey's curve: a stress test that also runs another journey (a write-contention
    # load, say) must not pool its errors into the lead journey's errors against users
    journeys = {_dig(e.result, "labels.journey") for e in per_stage.values()} - {None}
    stressy = {s: [e.result for e in entries if e.stage == s and e.kind in ("stress", "breaking")
                   and (not journeys or _dig(e.result, "labels.journey") in journeys)]
               for s in stages}
    overview = {
        "stages": list(stages),
        "timeseries": {s: series.downsample(e.result.get("timeseries") or (), max_points)
                       for s, e in per_stage.items()},
        "distribution": {s: series.distribution(e.total) for s, e in per_stage.items()},
        "errors_vs_users": {s: series.by_users(v) for s, v in stressy.items() if v},
        "actions": {"labels": [r["action"] for r in actions["rows"]],
                    "p95": {s: [c["p95_ms"] if c else None for c in
                                (r["cells"][i] for r in actions["rows"])]
                            for i, s in enumerate(stages)}},
        "server_timing": {s: series.server_timing(e.result) for s, e in per_stage.items()
                          if e.result.get("server_timing")},
    }
    tests = {}
    for e in entries:
        acts = e.result.get("actions") or {}
        tests[e.id] = {
            "title": f"{short_name(e.test)} · stage {e.stage}",
            "timeseries": series.downsample(e.result.get("timeseries") or (), max_points // 2),
            "distribution": series.distribution(e.total),
            "actions": {a: _ms(series.percentile(s, 95.0)) for a, s in acts.items()},
        }
    return {"overview": overview, "tests": tests}


def _warnings(entries: Sequence[Entry], env: Json, baseline_env: Json | None) -> list[Json]:
    out: list[Json] = []
    for e in entries:
        gen = e.result.get("generator") or {}
        where = f"{short_name(e.test)} (stage {e.stage})"
        if gen.get("saturated"):
            out.append({"kind": "generator", "test": e.test, "text":
                        f"{where}: the load generator was saturated "
                        f"{fmt.percent(gen.get('saturated_fraction'))} of the time "
                        f"(CPU max {fmt.percent(gen.get('cpu_max'))}); latencies include "
                        "client-side queueing and understate what the server can do"})
        dropped = int(e.result.get("dropped_iterations") or 0)
        rate = _dig(e.result, "workload.rate")
        duration = float(e.result.get("duration") or 0)
        achieved = (int(e.result.get("iterations") or 0) / duration) if duration else None
        if dropped or (rate and achieved is not None and achieved < 0.95 * float(rate)):
            out.append({"kind": "rate", "test": e.test, "text":
                        f"{where}: target arrival rate not reached: "
                        f"{fmt.number(achieved)} of {fmt.number(rate)} iterations/s, "
                        f"{dropped} dropped iterations"})
        if e.verdict == "error":
            out.append({"kind": "error", "test": e.test,
                        "text": f"{where}: the test errored; its numbers are incomplete"})
    if baseline_env is not None:
        a, b = env.get("fingerprint"), baseline_env.get("fingerprint")
        if a != b:
            out.append({"kind": "fingerprint", "test": None, "text":
                        f"machine fingerprint differs from the baseline's ({a or 'unknown'} vs "
                        f"{b or 'unknown'}): differences may come from the machine, "
                        "not the code"})
    if env.get("dirty"):
        out.append({"kind": "dirty", "test": None,
                    "text": "the working tree had uncommitted changes when this ran"})
    return out


def _flatten_comparison(comparison: Any) -> tuple[list[Mapping[str, Any]], list[str]]:
    """compare.ComparisonReport.to_dict() or a flat list of change rows -> (rows, warnings)."""
    if isinstance(comparison, Mapping):
        rows = [{**ch, "test": t.get("test"), "stage": t.get("stage")}
                for t in comparison.get("tests") or () for ch in t.get("changes") or ()]
        return rows, [str(w) for w in comparison.get("warnings") or ()]
    return list(comparison), []


def _gate_cells(r: Mapping[str, Any]) -> dict[str, str]:
    """What the gate could see and what it said, for a gated metric."""
    tolerance, seen = r.get("tolerance"), r.get("detectable")
    if not tolerance:
        return {"can_see": "", "gate": ""}
    from pytest_minigram.gate.tolerance import parse_tolerance

    can_see = "n/a" if seen is None else parse_tolerance(str(tolerance)).format_amount(seen)
    gate = ("regression" if r.get("regression") else
            "cannot judge" if r.get("cannot_judge") else "ok")
    return {"can_see": f"can see {can_see}; tolerance {tolerance}", "gate": gate}


def _comparison(rows: Sequence[Mapping[str, Any]] | None) -> list[Json] | None:
    if rows is None:
        return None
    out = []
    for r in rows:
        metric = str(r.get("metric"))
        base, cur = r.get("baseline"), r.get("current")
        change = r.get("change")
        if change is None and isinstance(base, int | float) and isinstance(cur, int | float):
            change = (cur - base) / base if base else None
        significant = bool(r.get("significant"))
        regression = bool(r.get("regression"))
        status = ("regression" if significant and regression else
                  "improvement" if significant else "noise")
        unit = fmt.metric_unit(metric)
        test, stage = str(r.get("test")), r.get("stage")
        name = short_name(test)
        if stage is not None and f"[{stage}" not in name and f"-{stage}]" not in name:
            name += f" · stage {stage}"
        out.append({"test": test, "name": name,
                    "stage": r.get("stage"), "metric": metric,
                    "baseline": fmt.value(base, unit), "current": fmt.value(cur, unit),
                    "change": fmt.change(change), "change_value": change, "status": status,
                    **_gate_cells(r)})
    order = {"regression": 0, "improvement": 1, "noise": 2}
    return sorted(out, key=lambda r: (order[r["status"]], -abs(r["change_value"] or 0)))


def build_context(runs: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None = None,
                  comparison: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None, *,
                  max_points: int = 120, title: str = "pytest-minigram performance report"
                  ) -> Json:
    """Everything the templates and charts show, computed from the runs. Pure."""
    if not runs:
        raise ReportInputError("no run given: the report needs at least one run file")
    runs = [coerce_run(r, f"run {i + 1}") for i, r in enumerate(runs)]
    base_run = coerce_run(baseline, "baseline") if baseline is not None else None
    entries = _entries(runs)
    stages = sorted({e.stage for e in entries}, key=stage_key)
    env = environment(runs[-1])
    for run in runs[:-1]:
        for stage, cfg in environment(run)["stages"].items():
            env["stages"].setdefault(stage, cfg)
    base_env = environment(base_run) if base_run is not None else None
    ranked = _ranked_groups(entries)
    primary = ranked[0] if ranked else None
    overview = _overview(entries, stages, primary)
    multi_stage = [g for g in ranked
                   if len({e.stage for e in entries if e.group == g}) > 1]
    actions = _actions(entries, stages, primary)
    charts = _charts(entries, stages, primary, actions, max_points)
    comp_rows, comp_warnings = (_flatten_comparison(comparison) if comparison is not None
                                else (None, []))
    comp = _comparison(comp_rows)
    summary = {v: sum(1 for e in entries if e.verdict == v) for v in ("passed", "failed", "error")}
    summary["total"] = len(entries)
    context: Json = {
        "title": title,
        "environment": env,
        "stages": stages,
        "stage_configs": [{"stage": s, "items": [[k, fmt.plain(v)] for k, v in
                                                  env["stages"].get(s, {}).items()]}
                          for s in stages],
        "summary": summary,
        "overview": {k: v for k, v in overview.items() if k != "measures"},
        # every other test that ran on more than one stage, for the overview's switcher
        "overview_others": [
            {k: v for k, v in _overview(entries, stages, g).items() if k != "measures"}
            | {"name": short_name(g)}
            for g in multi_stage if g != primary],
        "tests": _test_rows(entries, stages),
        "actions": actions,
        "charts": charts,
        "warnings": _warnings(entries, env, base_env)
        + [{"kind": "compare", "test": None, "text": w} for w in comp_warnings],
        "baseline": None if base_env is None else {
            "commit_short": base_env["commit_short"], "branch": base_env["branch"],
            "created_at": base_env["created_at"], "fingerprint": base_env["fingerprint"]},
        "comparison": comp,
    }
    context["findings"] = compute_findings(
        stages=stages, measures=overview["measures"], primary=primary,
        results=[ResultRow(e.stage, e.kind, e.result, e.verdict, e.slo, short_name(e.test))
                 for e in entries],
        server_timing=charts["overview"]["server_timing"],
        errors_vs_users=charts["overview"]["errors_vs_users"], comparison=comp)
    return context
