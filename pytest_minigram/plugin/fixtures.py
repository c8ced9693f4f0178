"""The fixtures: thin factories over the conductor, and the declarative ``perf`` marker."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from types import EllipsisType
from typing import Any, Literal, Protocol

import pytest

from pytest_minigram.breaking import BreakingPoint, find_breaking_point
from pytest_minigram.load import Journey, Result, VirtualUser
from pytest_minigram.plugin.conductor import RECORDS, Conductor, LoadSpec
from pytest_minigram.plugin.targets import TargetInfo, target_info
from pytest_minigram.record import PerfRecord, SloOutcome
from pytest_minigram.slo import SLOViolation, ThresholdError, evaluate, parse_all

CONDUCTOR = pytest.StashKey[Conductor]()
DECLARATIVE = pytest.StashKey[Callable[..., "PerfResult"]]()

JourneyLike = str | Journey | Callable[[VirtualUser], Awaitable[None]]
Target = str | Sequence[str] | None

# the declarative marker's keys and what each must be
DECLARATIVE_KEYS: dict[str, str] = {
    "journey": "a journey name, a Journey or an async function",
    "users": "a whole number of users >= 1",
    "duration": "seconds or a time such as 20s",
    "rate": "arrivals per second > 0",
    "stages": "a list of (rate, duration) pairs",
    "ramp_up": "seconds or a time such as 5s",
    "think_time": "seconds or a (low, high) pair",
    "iterations": "a whole number >= 1",
    "slo": "a threshold or a list of them, such as 'p95 < 500ms'",
    "apdex_t": "seconds > 0",
    "timeout": "seconds > 0",
    "params": "a dict",
    "max_users": "a whole number >= 1",
    "verify": "True or False",
    "ca_bundle": "a path to a PEM file of CA certificates",
    "rounds": "a whole number from 1 to 16",
}


@dataclass(repr=False)
class PerfResult(Result):
    """The merged load result a test sees: a `Result` (latencies in seconds, rates as
    fractions, ``stats("feed")`` for one action) with ``check()`` for thresholds."""

    record: PerfRecord | None = None

    @classmethod
    def of(cls, result: Result, record: PerfRecord) -> PerfResult:
        return cls(**{f.name: getattr(result, f.name) for f in fields(Result)}, record=record)

    @property
    def stage(self) -> str | None:
        return self.record.stage if self.record is not None else None

    @property
    def result(self) -> Result:
        return self

    def __repr__(self) -> str:
        return (f"<PerfResult stage={self.stage} count={self.count} "
                f"throughput={self.throughput:.1f}/s error_rate={self.error_rate:.2%} "
                f"p95={self.p95 * 1000:.1f}ms apdex={self.apdex}>")

    def check(self, *thresholds: str) -> None:
        """Assert k6-style thresholds such as ``"p95 < 500ms"``; lists every violation."""
        __tracebackhide__ = True
        try:
            outcomes = evaluate(self, list(thresholds))
        except ThresholdError as exc:
            raise pytest.UsageError(f"bad threshold: {exc}") from None
        if self.record is not None:
            self.record.slo.extend(SloOutcome(o.threshold.text, o.measured, o.passed,
                                              o.note) for o in outcomes)
        if not all(o.passed for o in outcomes):
            raise SLOViolation(outcomes, stage=self.stage)


class LoadFunction(Protocol):
    """``minigram_load``: run a journey under a workload and return the merged result."""

    def __call__(self, journey: JourneyLike = "realistic", *, users: int | None = None,
                 rate: float | None = None, duration: float | str | None = None,
                 stages: Sequence[tuple[float, float | str]] | None = None,
                 ramp_up: float | str | None = None,
                 think_time: float | tuple[float, float] | None = None,
                 iterations: int | None = None, max_users: int | None = None,
                 params: dict[str, Any] | None = None, apdex_t: float = 0.5,
                 timeout: float = 10.0, rounds: int | None = None,
                 baseline: Target | EllipsisType = ..., kind: str | None = None,
                 verify: bool = True, ca_bundle: str | None = None) -> PerfResult: ...


def _urls(target: Target) -> list[str]:
    if target is None:
        return []
    return [target] if isinstance(target, str) else list(target)


@pytest.fixture
def minigram_target(request: pytest.FixtureRequest) -> str:
    """The base URL load tests send traffic to. Override it to test your own service."""
    raise pytest.UsageError(
        f"{request.node.nodeid}: no target to load. Override the minigram_target fixture "
        "to return your service's base URL (https://staging.example.com), or install "
        "pytest-minigram[minigram] to test Minigram")


@pytest.fixture
def minigram_baseline_target() -> str | list[str] | None:
    """Where a baseline measured side by side lives: None (compare with a saved run, if any),
    or a base URL or list of them. Override it to gate on a baseline deployment of your own
    service (the same load runs against both, in turn)."""
    return None


@pytest.fixture
def minigram_load(request: pytest.FixtureRequest, minigram_target: str,
                  minigram_baseline_target: Target) -> LoadFunction:
    """Run a journey under load and return the merged result.

    ``minigram_load("realistic", users=200, duration="20s")`` runs a closed workload;
    ``rate=`` an open one, ``stages=[(rate, seconds), ...]`` a ramping arrival rate. The
    journey is a registered name, a `Journey` or an ``async def journey(user)`` function.
    ``rounds=N`` (default ``--minigram-rounds``) runs it N times in a row, round r against
    the target's r-th process, and returns the rounds joined. With a baseline target, each
    round also runs against the baseline, the two in turn. An ``https://`` target is verified
    against the system's CAs or ``ca_bundle``; ``verify=False`` accepts any certificate.
    """
    conductor = request.config.stash[CONDUCTOR]

    def load(journey: JourneyLike = "realistic", *, users: int | None = None,
             rate: float | None = None, duration: float | str | None = None,
             stages: Sequence[tuple[float, float | str]] | None = None,
             ramp_up: float | str | None = None,
             think_time: float | tuple[float, float] | None = None,
             iterations: int | None = None, max_users: int | None = None,
             params: dict[str, Any] | None = None, apdex_t: float = 0.5,
             timeout: float = 10.0, rounds: int | None = None,
             baseline: Target | EllipsisType = ..., kind: str | None = None,
             verify: bool = True, ca_bundle: str | None = None) -> PerfResult:
        spec = LoadSpec(users=users, rate=rate, duration=duration, stages=stages,
                        ramp_up=ramp_up, think_time=think_time, iterations=iterations,
                        max_users=max_users, params=params, apdex_t=apdex_t, timeout=timeout,
                        rounds=rounds, kind=kind, verify=verify, ca_bundle=ca_bundle)
        base = minigram_baseline_target if isinstance(baseline, EllipsisType) else baseline
        target = target_info(request, minigram_target)
        base_infos = [target_info(request, url, "baseline") for url in _urls(base)]
        record, result = conductor.run_load(request.node, journey, target, base_infos, spec)
        return PerfResult.of(result, record)

    return load


def _check_value(key: str, value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key in ("users", "iterations", "max_users"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if key == "rounds":
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 16
    if key in ("rate", "apdex_t", "timeout"):
        return number and math.isfinite(value) and value > 0
    if key in ("duration", "ramp_up"):
        return (number and value >= 0) or isinstance(value, str)
    if key == "params":
        return isinstance(value, dict)
    if key == "journey":
        return isinstance(value, str | Journey) or callable(value)
    if key == "think_time":
        return number or (isinstance(value, tuple | list) and len(value) == 2)
    if key == "stages":
        return isinstance(value, list | tuple) and all(
            isinstance(s, tuple | list) and len(s) == 2 for s in value)
    return True


def validate_marker(item: pytest.Item) -> None:
    """A mistake in ``@pytest.mark.perf(...)`` is a usage error naming the test and the key."""
    marker = item.get_closest_marker("perf")
    if marker is None or not marker.kwargs:
        return
    for key, value in marker.kwargs.items():
        if key not in DECLARATIVE_KEYS:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.perf: unknown key {key!r}; valid keys: "
                f"{', '.join(DECLARATIVE_KEYS)}")
        if not _check_value(key, value):
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.perf: bad {key}={value!r}; expected "
                f"{DECLARATIVE_KEYS[key]}")
    if "slo" in marker.kwargs:
        slo = marker.kwargs["slo"]
        try:
            parse_all([slo] if isinstance(slo, str) else list(slo))
        except (ThresholdError, TypeError) as exc:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.perf: bad slo: {exc}") from None


@pytest.fixture(autouse=True)
def _minigram_declarative(request: pytest.FixtureRequest) -> None:
    """Prepare ``@pytest.mark.perf(users=..., slo=[...])`` tests; the plugin runs them."""
    marker = request.node.get_closest_marker("perf")
    if marker is not None and marker.kwargs:
        request.node.stash[DECLARATIVE] = request.getfixturevalue("minigram_load")


def run_declarative(item: pytest.Item) -> None:
    load = item.stash.get(DECLARATIVE, None)
    marker = item.get_closest_marker("perf")
    if load is None or marker is None:
        return
    __tracebackhide__ = True
    kwargs = dict(marker.kwargs)
    slo = kwargs.pop("slo", ())
    result = load(kwargs.pop("journey", "realistic"), **kwargs)
    result.check(*([slo] if isinstance(slo, str) else slo))


@pytest.fixture
def minigram_breaking_point(request: pytest.FixtureRequest, minigram_target: str) -> Any:
    """Search for the highest load that still meets the SLOs, and keep it as one record.

    ``minigram_breaking_point("realistic", slo=["error_rate < 1%", "p95 < 500ms"],
    users=(5, 400))`` ramps the users geometrically from 5, then bisects between the last
    passing and the first failing step; ``rate=(start, limit)`` searches the arrival rate of
    an open workload instead. Each step is one load of ``step_duration``. Returns a
    `pytest_minigram.breaking.BreakingPoint`. The search itself passes whatever it finds:
    assert on its ``value``, ``low`` and ``high``.
    """
    conductor = request.config.stash[CONDUCTOR]
    settings = conductor.settings
    target: TargetInfo = target_info(request, minigram_target)

    def search(journey: JourneyLike = "realistic", *, slo: Any,
               users: tuple[float, float] | None = None,
               rate: tuple[float, float] | None = None, step_duration: float | str = "5s",
               growth: float = 2.0, resolution: float = 0.1, max_steps: int = 12,
               **load_kwargs: Any) -> BreakingPoint:
        if (users is None) == (rate is None):
            raise pytest.UsageError("minigram_breaking_point: give users=(start, limit) or "
                                    "rate=(start, limit), not both")
        try:
            thresholds = parse_all([slo] if isinstance(slo, str) else list(slo))
        except ThresholdError as exc:
            raise pytest.UsageError(f"minigram_breaking_point: bad threshold: {exc}") from None
        if not thresholds:
            raise pytest.UsageError("minigram_breaking_point: slo=[...] must not be empty")
        metric: Literal["users", "rate"] = "users" if users is not None else "rate"
        # --minigram-users / the rate factor scale the declared range; each probe then runs
        # exactly the load the search asked for.
        factor = settings.users_factor if metric == "users" else settings.rate_factor
        start, limit = users if users is not None else rate  # type: ignore[misc]
        records: list[PerfRecord] = []
        by_load: dict[float, PerfRecord] = {}

        def probe(load: float) -> tuple[bool, dict[str, Any]]:
            value = load / factor
            spec = LoadSpec(duration=step_duration, kind="breaking",
                            users=value if metric == "users" else None,
                            rate=value if metric == "rate" else None, **load_kwargs)
            record, result = conductor.run_load(request.node, journey, target, [], spec)
            outcomes = evaluate(result, thresholds)
            record.slo = [SloOutcome(o.threshold.text, o.measured, o.passed, o.note)
                          for o in outcomes]
            records.append(record)
            by_load[load] = record
            return all(o.passed for o in outcomes), {
                "count": result.count, "throughput": result.throughput,
                "error_rate": result.error_rate, "p95": result.p95,
                "slo": {o.threshold.text: o.passed for o in outcomes}}

        bp = find_breaking_point(probe, start=start * factor, limit=limit * factor,
                                 growth=growth, resolution=resolution, max_steps=max_steps,
                                 metric=metric)
        kept = by_load[bp.value] if bp.value is not None else records[0]
        kept.kind = "breaking"
        kept.breaking_point = bp.to_dict()
        stash = request.node.stash.setdefault(RECORDS, [])
        stash[:] = [r for r in stash if not any(r is s for s in records)] + [kept]
        return bp

    return search
