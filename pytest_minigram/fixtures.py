"""The fixtures: thin factories over the stage pool, the API client and the load engine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_minigram.api_client import MinigramClient
from pytest_minigram.backends import BackendUnavailable
from pytest_minigram.plugin_session import MinigramSession, get_session, targets_minigram
from pytest_minigram.slo import SLOViolation, ThresholdError, evaluate
from pytest_minigram.stages import BASELINE

DECLARATIVE_KEYS = ("journey", "users", "duration", "rate", "stages", "ramp_up", "think_time",
                    "iterations", "slo", "apdex_t", "timeout", "params", "max_users", "rounds")


@dataclass
class MinigramServer:
    """A running Minigram: its URL, stage, seed sizes and log file.

    With ``--minigram-rounds N`` the stage has N server processes on the same data: ``urls``
    and ``pids`` list them all, ``url`` and ``pid`` are the first.
    """

    url: str
    stage: str
    seed: dict[str, int]
    log_path: Path
    backends: dict[str, str]
    pid: int | None = None
    urls: list[str] = field(default_factory=list)
    pids: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.urls = self.urls or [self.url]
        self.pids = self.pids or [self.pid]

    def alive(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=5).status_code < 500
        except requests.RequestException:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class PerfResult:
    """The merged load result a test sees: the engine's Result plus ``check()``."""

    def __init__(self, result: Any, record: dict[str, Any], stage: str | None) -> None:
        self._result = result
        self._record = record
        self.stage = stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)

    def __repr__(self) -> str:
        r = self._result
        return (f"<PerfResult stage={self.stage} count={r.count} throughput={r.throughput:.1f}/s "
                f"error_rate={r.error_rate:.2%} p95={r.p95 * 1000:.1f}ms apdex={r.apdex:.2f}>")

    @property
    def result(self) -> Any:
        return self._result

    def check(self, *thresholds: str) -> None:
        """Assert k6-style thresholds such as ``"p95 < 500ms"``; lists every violation."""
        __tracebackhide__ = True
        try:
            outcomes = evaluate(self._result, list(thresholds))
        except ThresholdError as exc:
            raise pytest.UsageError(f"bad threshold: {exc}") from None
        self._record["slo"].extend(
            {"threshold": o.threshold.text, "measured": o.measured, "passed": o.passed,
             "note": o.note} for o in outcomes)
        if not all(o.passed for o in outcomes):
            raise SLOViolation(outcomes, stage=self.stage)


@pytest.fixture(scope="session")
def minigram_session(pytestconfig: pytest.Config) -> MinigramSession:
    """The plugin's state for this session (settings, servers, results)."""
    return get_session(pytestconfig)


@pytest.fixture
def minigram_stage(request: pytest.FixtureRequest, minigram_session: MinigramSession) -> str:
    """The stage this test runs against (parametrized when several are selected)."""
    return str(getattr(request, "param", minigram_session.settings.stages[0]))


@pytest.fixture
def minigram_server(minigram_session: MinigramSession, minigram_stage: str) -> MinigramServer:
    """A healthy, seeded Minigram server for this test's stage, shared across the session."""
    try:
        info = minigram_session.server_info(minigram_stage)
    except BackendUnavailable as exc:
        message = f"stage {minigram_stage} needs PostgreSQL and Redis: {exc}"
        if minigram_session.settings.require_backends:
            pytest.fail(message + " (--minigram-require-backends is set)", pytrace=False)
        pytest.skip(message)
    return MinigramServer(url=info["url"], stage=minigram_stage, seed=info.get("seed", {}),
                          log_path=Path(info["log"]), backends=info.get("backends", {}),
                          pid=info.get("pid"), urls=info.get("urls") or [],
                          pids=info.get("pids") or [])


@pytest.fixture
def minigram_target(minigram_server: MinigramServer) -> str:
    """The base URL load tests send traffic to. Override it to test your own service."""
    return minigram_server.url


@pytest.fixture
def minigram_baseline_target(request: pytest.FixtureRequest,
                             minigram_session: MinigramSession) -> str | list[str] | None:
    """Where the baseline measured side by side lives: None (compare with a saved run, if any),
    or a base URL or list of them. With ``--minigram-duet PATH``, the Minigram servers started
    from PATH. Override it to compare against a baseline deployment of your own service."""
    if (minigram_session.settings.duet is None or "minigram_server" not in request.fixturenames
            or not targets_minigram(request.node)):
        return None  # the duet baseline is Minigram: only for loads that go to Minigram
    server: MinigramServer = request.getfixturevalue("minigram_server")
    try:
        info = minigram_session.server_info(server.stage, BASELINE)
    except BackendUnavailable as exc:
        pytest.fail(f"the duet baseline for stage {server.stage} did not start: {exc}",
                    pytrace=False)
    return list(info.get("urls") or [info["url"]])


@pytest.fixture
def minigram_client(minigram_server: MinigramServer) -> Iterator[MinigramClient]:
    """A functional API client for the test's Minigram server."""
    with MinigramClient(minigram_server.url) as client:
        yield client


@pytest.fixture
def minigram_load(request: pytest.FixtureRequest, minigram_session: MinigramSession,
                  minigram_target: str,
                  minigram_baseline_target: str | list[str] | None) -> Any:
    """Run a journey under load and return the merged result.

    ``minigram_load("realistic", users=200, duration="20s")`` runs a closed workload;
    ``rate=`` an open one, ``stages=[(rate, seconds), ...]`` a ramping arrival rate.
    ``rounds=N`` (default ``--minigram-rounds``) runs it N times in a row, round r against
    the stage's r-th server process, and returns the rounds joined. With a baseline target
    (``--minigram-duet``), each round also runs against the baseline, the two in turn.
    """
    server: MinigramServer | None = None
    if "minigram_server" in request.fixturenames:
        server = request.getfixturevalue("minigram_server")
    stage = server.stage if server else None

    def load(journey: Any = "realistic", **kwargs: Any) -> PerfResult:
        kwargs.setdefault("baseline", minigram_baseline_target)
        record, result = minigram_session.run_load(request.node, journey, minigram_target,
                                                    stage=stage, server=server, **kwargs)
        return PerfResult(result, record, stage)

    return load


@pytest.fixture(autouse=True)
def _minigram_declarative(request: pytest.FixtureRequest, minigram_stage: str) -> None:
    """Prepare ``@pytest.mark.perf(users=..., slo=[...])`` tests; the plugin runs them."""
    marker = request.node.get_closest_marker("perf")
    if marker is not None and any(k in marker.kwargs for k in DECLARATIVE_KEYS):
        request.node.stash[DECLARATIVE] = request.getfixturevalue("minigram_load")


DECLARATIVE = pytest.StashKey[Any]()


def run_declarative(item: pytest.Item) -> None:
    load = item.stash.get(DECLARATIVE, None)
    marker = item.get_closest_marker("perf")
    if load is None or marker is None:
        return
    kwargs = {k: v for k, v in marker.kwargs.items() if k in DECLARATIVE_KEYS}
    __tracebackhide__ = True
    slo = kwargs.pop("slo", ())
    if isinstance(slo, str):
        slo = [slo]
    result = load(kwargs.pop("journey", "realistic"), **kwargs)
    result.check(*slo)


@pytest.fixture
def minigram_breaking_point(request: pytest.FixtureRequest, minigram_session: MinigramSession,
                            minigram_target: str) -> Any:
    """Search for the highest load that still meets the SLOs, and keep it as one record.

    ``minigram_breaking_point("realistic", slo=["error_rate < 1%", "p95 < 500ms"],
    users=(5, 400))`` ramps the users geometrically from 5, then bisects between the last
    passing and the first failing step; ``rate=(start, limit)`` searches the arrival rate of
    an open workload instead. Each step is one ``minigram_load`` run of ``step_duration``.
    Returns a `pytest_minigram.breaking.BreakingPoint`. The search itself passes whatever it
    finds: assert on its ``value``, ``low`` and ``high``.
    """
    from pytest_minigram.breaking import BreakingPoint, find_breaking_point
    from pytest_minigram.plugin_session import RECORDS
    from pytest_minigram.slo import parse_all

    server: MinigramServer | None = None
    if "minigram_server" in request.fixturenames:
        server = request.getfixturevalue("minigram_server")
    stage = server.stage if server else None
    settings = minigram_session.settings

    def search(journey: Any = "realistic", *, slo: Any, users: tuple[float, float] | None = None,
               rate: tuple[float, float] | None = None, step_duration: Any = "5s",
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
        metric = "users" if users is not None else "rate"
        # --minigram-users / the rate factor scale the declared range; each probe then runs
        # exactly the load the search asked for.
        factor = settings.users_factor if metric == "users" else settings.rate_factor
        start, limit = users if users is not None else rate  # type: ignore[misc]
        records: list[dict[str, Any]] = []
        by_load: dict[float, dict[str, Any]] = {}

        def probe(load: float) -> tuple[bool, dict[str, Any]]:
            kwargs = dict(load_kwargs, duration=step_duration, kind="breaking")
            kwargs[metric] = load / factor
            record, result = minigram_session.run_load(request.node, journey, minigram_target,
                                                       stage=stage, server=server, **kwargs)
            outcomes = evaluate(result, thresholds)
            record["slo"] = [{"threshold": o.threshold.text, "measured": o.measured,
                              "passed": o.passed, "note": o.note} for o in outcomes]
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
        kept["kind"] = "breaking"
        kept["breaking_point"] = bp.to_dict()
        stash = request.node.stash.setdefault(RECORDS, [])
        stash[:] = [r for r in stash if not any(r is s for s in records)] + [kept]
        return bp

    return search
