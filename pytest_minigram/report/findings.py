"""Plain-language findings computed from the measured numbers.

Each rule looks for one pattern (errors under load, a dominant Server-Timing component, a
throughput ceiling, breaking points, failed SLOs, baseline regressions) and states it with
the numbers that show it. Nothing here is written in advance: no data, no finding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pytest_minigram.report import fmt

Json = dict[str, Any]


class ResultRow(NamedTuple):
    stage: str
    kind: str
    result: Mapping[str, Any]
    verdict: str
    slo: Sequence[Mapping[str, Any]]
    test: str = ""  # short test id: the evidence a finding names

COMPONENT_NAMES = {"db": "the database", "cache": "the cache", "hash": "password hashing",
                   "app": "application code"}
ERROR_SHARE = 0.05  # error rates at or above this are worth a finding
DOMINANT_SHARE = 0.6  # a component owning this share of server time "bounds" an action
MIN_SERVER_MS = 5.0  # below this an action is fast whatever dominates it


def error_cause(errors: Mapping[str, Any]) -> str | None:
    """The most frequent error kind in words: '503 database is locked', 'timeouts'."""
    if not errors:
        return None
    kind, info = max(errors.items(), key=lambda kv: int(kv[1].get("count") or 0))
    if kind.startswith("status:"):
        detail = _detail(str(info.get("example") or ""))
        return f"{kind.split(':', 1)[1]} {detail}" if detail else f"status {kind.split(':')[1]}"
    return {"timeout": "timeouts", "connection_refused": "refused connections",
            "connection_reset": "reset connections"}.get(kind, kind.replace("_", " "))


def _detail(example: str) -> str | None:
    start = example.find("{")
    if start < 0:
        return None
    try:
        body = json.loads(example[start:])
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in ("detail", "error", "message"):
        if isinstance(body.get(key), str):
            return body[key].replace("_", " ")
    return None


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _error_findings(results: Sequence[ResultRow]) -> list[Json]:
    """Worst fixed-load run per stage whose error rate is high, named with its evidence.

    A 4xx is the app refusing a request, which is as often the script's mistake as the app's:
    the finding says so instead of presenting it as the app failing.
    """
    worst: dict[str, tuple[float, ResultRow]] = {}
    for row in results:
        workload = row.result.get("workload") or {}
        if row.kind not in ("load", "breaking") or workload.get("model") != "closed":
            continue
        total = row.result.get("total") or {}
        n = int(total.get("count") or 0)
        rate = int(total.get("errors") or 0) / n if n else 0.0
        if rate >= ERROR_SHARE and rate > worst.get(row.stage, (0.0, row))[0]:
            worst[row.stage] = (rate, row)
    out = []
    for stage, (rate, row) in worst.items():
        errors = row.result.get("errors") or {}
        cause = error_cause(errors)
        users = (row.result.get("workload") or {}).get("users")
        text = f"stage {stage}: {fmt.percent(rate)} of requests failed"
        text += f" with {cause}" if cause else ""
        text += f" in {row.test}" if row.test else ""
        text += f" at {users} users" if users else ""
        if _mostly_client_errors(errors):
            text += (" (4xx: the app refused the requests; check that the journey's own "
                     "requests are valid, or declare the status as expected)")
        out.append({"tone": "bad", "stage": stage, "text": text})
    return out


def _mostly_client_errors(errors: Mapping[str, Any]) -> bool:
    def count(kinds: Sequence[str]) -> int:
        return sum(int(v.get("count") or 0) for k, v in errors.items() if k in kinds)
    client = [k for k in errors if k.startswith("status:4")]
    return bool(client) and count(client) * 2 > count(list(errors))


def _onset_findings(errors_vs_users: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Json]:
    """Where errors start and where throughput stops growing, from stress/breaking runs."""
    out = []
    for stage, points in errors_vs_users.items():
        pts = [p for p in points if p.get("requests", 0) >= 10]
        if len(pts) < 3:
            continue
        onset = next((p for p in pts if p["error_rate"] >= ERROR_SHARE), None)
        if onset is not None:
            out.append({"tone": "bad", "stage": stage, "text":
                        f"stage {stage}: errors pass {fmt.percent(ERROR_SHARE)} at "
                        f"~{onset['users']:.0f} users in the stress runs "
                        f"({fmt.percent(onset['error_rate'])} there)"})
        peak = max(p["rps"] for p in pts)
        first = next(p for p in pts if p["rps"] >= 0.9 * peak)
        if pts[-1]["users"] >= 1.5 * first["users"]:
            out.append({"tone": "info", "stage": stage, "text":
                        f"stage {stage}: throughput levels off at ~{fmt.number(peak)} req/s "
                        f"from ~{first['users']:.0f} users; up to {pts[-1]['users']:.0f} users "
                        "more load only adds latency"
                        + (" and errors" if pts[-1]["error_rate"] >= ERROR_SHARE else "")})
    return out


def _bound_findings(server_timing: Mapping[str, Mapping[str, Mapping[str, float]]],
                    stages: Sequence[str]) -> list[Json]:
    """Actions whose server time is mostly one component, merged across stages."""
    claims: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    numbers: dict[tuple[str, tuple[str, ...]], str] = {}
    for stage in stages:
        per_comp: dict[str, list[tuple[str, float, float]]] = {}
        for action, comps in (server_timing.get(stage) or {}).items():
            whole = sum(comps.values())
            if not whole:
                continue
            name, part = max(comps.items(), key=lambda kv: kv[1])
            if part / whole >= DOMINANT_SHARE and whole >= MIN_SERVER_MS:
                per_comp.setdefault(name, []).append((action, part, whole))
        for comp, items in per_comp.items():
            key = (comp, tuple(a for a, _, _ in items))
            claims.setdefault(key, []).append(stage)
            part = sum(p for _, p, _ in items) / len(items)
            whole = sum(w for _, _, w in items) / len(items)
            numbers[key] = f"{part:.0f} ms of {whole:.0f} ms" if whole >= 10 else \
                f"{part:.1f} ms of {whole:.1f} ms"
    out = []
    for (comp, actions), in_stages in claims.items():
        if comp == "app" and len(actions) > 2:
            continue  # "mostly application code" for everything says nothing
        where = ("in every stage" if len(in_stages) == len(stages) > 1
                 else "in stage " + _join(in_stages))
        verb = "is" if len(actions) == 1 else "are"
        out.append({"tone": "info", "stage": None, "text":
                    f"{_join(list(actions))} {verb} bound by "
                    f"{COMPONENT_NAMES.get(comp, comp)} {where}: {numbers[(comp, actions)]}"
                    f"{' per request' if len(actions) == 1 else ' per request on average'}"
                    f"{f' (stage {in_stages[-1]})' if len(in_stages) > 1 else ''}"})
    return out


def _stage_findings(stages: Sequence[str], measures: Mapping[str, Mapping[str, Any]],
                    primary: str | None) -> list[Json]:
    out = []
    if len(stages) < 2:
        return out
    first, last = stages[0], stages[-1]
    a, b = measures.get(first) or {}, measures.get(last) or {}
    if a.get("max_users") and b.get("max_users"):
        r = b["max_users"] / a["max_users"]
        out.append({"tone": "good" if r > 1 else "bad", "stage": None, "text":
                    f"stage {last} holds {r:.1f}× the users of stage {first} within its SLOs "
                    f"({b['max_users']:g} vs {a['max_users']:g} users)"})
    if a.get("p95") and b.get("p95") and primary:
        ratio = fmt.ratio(a["p95"], b["p95"], higher_is_better=False)
        if ratio:
            name = primary.rsplit("::", 1)[-1]
            out.append({"tone": ratio["tone"], "stage": None, "text":
                        f"{name}: p95 goes from {fmt.seconds(a['p95'])} in stage {first} to "
                        f"{fmt.seconds(b['p95'])} in stage {last} ({ratio['text']})"})
    return out


def _slo_findings(results: Sequence[ResultRow]) -> list[Json]:
    failed: dict[str, list[Mapping[str, Any]]] = {}
    totals: dict[str, int] = {}
    first_test: dict[str, str] = {}
    for row in results:
        totals[row.stage] = totals.get(row.stage, 0) + 1
        if row.verdict == "failed":
            misses = [s for s in row.slo if not s.get("passed")]
            if misses and row.stage not in first_test:
                first_test[row.stage] = row.test
            failed.setdefault(row.stage, []).extend(misses)
    out = []
    for stage, misses in failed.items():
        tests = sum(1 for r in results if r.stage == stage and r.verdict == "failed")
        example = ""
        if misses:
            m = misses[0]
            where = f" in {first_test[stage]}" if first_test.get(stage) else ""
            example = (f"; e.g. {m.get('threshold')} measured "
                       f"{fmt.measured(m.get('measured'), str(m.get('threshold')))}{where}")
        out.append({"tone": "bad", "stage": stage, "text":
                    f"stage {stage}: {tests} of {totals[stage]} perf tests missed their SLOs"
                    f"{example}"})
    return out


def _baseline_findings(comparison: Sequence[Mapping[str, Any]] | None) -> list[Json]:
    if not comparison:
        return []
    bad = [c for c in comparison if c["status"] == "regression"]
    if not bad:
        return [{"tone": "good", "stage": None,
                 "text": "no significant regression against the baseline"}]
    top = bad[0]
    return [{"tone": "bad", "stage": None, "text":
             f"{len(bad)} significant regression{'s' if len(bad) > 1 else ''} against the "
             f"baseline; largest: {top['name']} {top['metric']} {top['change']} "
             f"({top['baseline']} → {top['current']})"}]


def compute_findings(*, stages: Sequence[str], measures: Mapping[str, Mapping[str, Any]],
                     primary: str | None, results: Sequence[ResultRow],
                     server_timing: Mapping[str, Mapping[str, Mapping[str, float]]],
                     errors_vs_users: Mapping[str, Sequence[Mapping[str, Any]]],
                     comparison: Sequence[Mapping[str, Any]] | None) -> list[Json]:
    order = {s: i for i, s in enumerate(stages)}
    by_stage = sorted(
        _error_findings(results) + _onset_findings(errors_vs_users) + _slo_findings(results),
        key=lambda f: order.get(f["stage"], len(order)))
    return (_baseline_findings(comparison) + _stage_findings(stages, measures, primary)
            + by_stage + _bound_findings(server_timing, stages))
