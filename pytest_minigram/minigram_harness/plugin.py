"""The Minigram harness as a pytest plugin: ``--stage``, ``minigram_server`` and friends.

Its fixtures override the generic ``minigram_target`` and ``minigram_baseline_target``: they
are registered at configure time, after the generic plugin's, so they win over those while a
conftest's own ``minigram_target`` still wins over both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_minigram.minigram_harness import hookspecs
from pytest_minigram.minigram_harness import plugin_options as harness_options
from pytest_minigram.minigram_harness.plugin_options import HarnessSettings
from pytest_minigram.plugin import session_tmpdir, settings, xdist_worker
from pytest_minigram.plugin.targets import TargetInfo
from pytest_minigram.server import ServerDied

if TYPE_CHECKING:
    from pytest_minigram.minigram_harness.api_client import MinigramClient
    from pytest_minigram.minigram_harness.stages import StagePool

HEAD, BASELINE = "head", "baseline"
HARNESS = pytest.StashKey["Harness"]()


def _backend_unavailable() -> type[Exception]:
    from pytest_minigram.minigram_harness.backends import BackendUnavailable

    return BackendUnavailable


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

    @classmethod
    def from_info(cls, stage: str, info: dict[str, Any]) -> MinigramServer:
        return cls(url=info["url"], stage=stage, seed=info.get("seed", {}),
                   log_path=Path(info["log"]), backends=info.get("backends", {}),
                   pid=info.get("pid"), urls=info.get("urls") or [],
                   pids=info.get("pids") or [])

    def alive(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                return int(response.status) < 500
        except OSError as exc:
            code = getattr(exc, "code", None)
            return code is not None and int(code) < 500

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _key(stage: str, side: str) -> str:
    return f"stage:{stage}" if side == HEAD else f"stage:{stage}@{side}"



class Harness:
    """The session's Minigram servers: started here, or by the xdist controller."""

    def __init__(self, config: pytest.Config, hs: HarnessSettings) -> None:
        self.config = config
        self.settings = hs
        self._pool: StagePool | None = None

    @property
    def pool(self) -> StagePool:
        if self._pool is None:
            from pytest_minigram.minigram_harness.stages import StagePool

            hook = self.config.hook
            hs = self.settings

            def seed_sizes(stage: str) -> dict[str, int]:
                answer = hook.pytest_minigram_seed_data(config=self.config, stage=stage)
                return answer or {"users": hs.seed_users, "photos": hs.seed_photos}

            self._pool = StagePool(session_tmpdir(self.config) / "servers", pg_url=hs.pg_url,
                                   redis_url=hs.redis_url, seed_sizes=seed_sizes,
                                   instances=settings(self.config).rounds,
                                   baseline_code=hs.duet, host=hs.bind)
        return self._pool

    def info(self, stage: str, side: str = HEAD) -> dict[str, Any]:
        worker = xdist_worker(self.config)
        if worker is not None:
            info: dict[str, Any] = worker.provided(_key(stage, side)) or {
                "error": f"the xdist controller started no Minigram for stage {stage}"}
            if "error" in info:
                raise _backend_unavailable()(info["error"])
            return info
        return self.pool.get(stage, side).describe()

    def provide(self, name: str) -> dict[str, Any] | None:
        """On the xdist controller: start the stage a worker asks for (once for all)."""
        if not name.startswith("stage:"):
            return None
        stage, _, side = name.removeprefix("stage:").partition("@")
        side = side or HEAD
        try:
            return self.pool.get(stage, side).describe()
        except _backend_unavailable() as exc:
            return {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - e.g. the baseline checkout is broken
            if side == HEAD:
                raise
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _stack(self, stage: str, side: str) -> Any:
        if self._pool is None:
            return None
        return next((s for s in self._pool.running(side) if s.stage == stage), None)

    def target_info(self, server: MinigramServer, side: str) -> TargetInfo:
        stack = self._stack(server.stage, side)
        # pids are only this process's to check when it started the servers: an xdist
        # worker may run on another machine, or in a PID namespace of its own, and leaves
        # liveness to the controller's HTTP health checks
        pids = [pid for pid in server.pids if pid] if stack is not None else []
        what = "Minigram server" if side == HEAD else "duet baseline's Minigram server"

        def alive() -> bool:  # cheap, polled during the load: no HTTP (the server is busy)
            return stack is None or bool(stack.alive)

        def check() -> None:
            if stack is not None:
                for proc in stack.servers:
                    proc.check_alive()
                return
            if not server.alive():
                where = ""
                if side != HEAD:
                    raise ServerDied(f"the {what} for stage {server.stage}{where} stopped "
                                     "during the load")
                raise ServerDied(f"the {what} for stage {server.stage}{where} stopped "
                                 f"answering during the load. Last lines of its log:\n"
                                 f"{server.log_tail()}")

        return TargetInfo(urls=list(server.urls), variant=server.stage,
                          params={"seed_users": server.seed.get("users", 0)},
                          pids=pids if side == HEAD else [], health_url=f"{server.url}/healthz",
                          alive=alive, check=check)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def targets_minigram(item: pytest.Item) -> bool:
    """False when a conftest overrides ``minigram_target``: the load goes to another service."""
    # pytest has no public "which fixture wins here" API; FixtureManager.getfixturedefs is
    # the closest. If it ever changes, fall back to treating the target as Minigram.
    try:
        manager: Any = item.config.pluginmanager.get_plugin("funcmanage")
        defs = manager.getfixturedefs("minigram_target", item)
    except Exception:
        return True
    return not defs or getattr(defs[-1].func, "__module__", "") == __name__



class HarnessFixtures:
    """Registered in ``pytest_configure``, after the generic plugin: these fixtures win."""

    @pytest.fixture
    def minigram_stage(self, request: pytest.FixtureRequest) -> str:
        """The stage this test runs against (parametrized when several are selected)."""
        harness = request.config.stash[HARNESS]
        return str(getattr(request, "param", harness.settings.stages[0]))

    @pytest.fixture(autouse=True)
    def _minigram_stage_in_closure(self, minigram_stage: str) -> None:
        """Every test can be parametrized by stage (a declarative perf test has no other
        fixture that would bring ``minigram_stage`` in)."""

    @pytest.fixture
    def minigram_server(self, request: pytest.FixtureRequest,
                        minigram_stage: str) -> MinigramServer:
        """A healthy, seeded Minigram server for this test's stage, shared across the session."""
        harness = request.config.stash[HARNESS]
        try:
            info = harness.info(minigram_stage)
        except _backend_unavailable() as exc:
            message = f"stage {minigram_stage} needs PostgreSQL and Redis: {exc}"
            if harness.settings.require_backends:
                pytest.fail(message + " (--minigram-require-backends is set)", pytrace=False)
            pytest.skip(message)
        return MinigramServer.from_info(minigram_stage, info)

    @pytest.fixture
    def minigram_target(self, minigram_server: MinigramServer) -> str:
        """The base URL load tests send traffic to: this stage's Minigram. Override it to
        test your own service."""
        return minigram_server.url

    @pytest.fixture
    def minigram_baseline_target(self, request: pytest.FixtureRequest) -> list[str] | None:
        """With ``--minigram-duet PATH``: the Minigram servers started from PATH."""
        harness = request.config.stash[HARNESS]
        if (harness.settings.duet is None or "minigram_server" not in request.fixturenames
                or not targets_minigram(request.node)):
            return None  # the duet baseline is Minigram: only for loads that go to Minigram
        server: MinigramServer = request.getfixturevalue("minigram_server")
        try:
            info = harness.info(server.stage, BASELINE)
        except _backend_unavailable() as exc:
            pytest.fail(f"the duet baseline for stage {server.stage} did not start: {exc}",
                        pytrace=False)
        return list(info.get("urls") or [info["url"]])

    @pytest.fixture
    def minigram_client(self, minigram_server: MinigramServer) -> Iterator[MinigramClient]:
        """A functional API client for the test's Minigram server."""
        from pytest_minigram.minigram_harness.api_client import MinigramClient

        with MinigramClient(minigram_server.url) as client:
            yield client


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    harness_options.add_harness_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[HARNESS] = Harness(config, harness_options.resolve(config))
    config.pluginmanager.register(HarnessFixtures(), "minigram-harness-fixtures")


def pytest_unconfigure(config: pytest.Config) -> None:
    harness = config.stash.get(HARNESS, None)
    if harness is not None:
        harness.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    hs = config.stash[HARNESS].settings
    pg = hs.pg_url and "given URL" or "throwaway server if needed"
    rd = hs.redis_url and "given URL" or "throwaway server if needed"
    return [f"minigram: stages {', '.join(hs.stages)}",
            f"minigram: backends: PostgreSQL {pg}, Redis {rd}"
            + ("; required" if hs.require_backends else "")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    hs = metafunc.config.stash[HARNESS].settings
    marker = metafunc.definition.get_closest_marker("perf")
    declarative = (marker is not None and bool(marker.kwargs)
                   and targets_minigram(metafunc.definition))
    if "minigram_server" in metafunc.fixturenames or declarative:
        metafunc.parametrize("minigram_stage", list(hs.stages), indirect=True,
                             ids=[f"stage{s}" for s in hs.stages])


def pytest_minigram_target_info(request: pytest.FixtureRequest, url: str,
                                side: str) -> TargetInfo | None:
    if "minigram_server" not in request.fixturenames:
        return None
    harness: Harness = request.config.stash[HARNESS]
    server: MinigramServer = request.getfixturevalue("minigram_server")
    if side == HEAD and url == server.url:
        return harness.target_info(server, HEAD)
    if side == BASELINE and harness.settings.duet is not None:
        info = harness.info(server.stage, BASELINE)
        if url in (info.get("urls") or [info["url"]]):
            return harness.target_info(MinigramServer.from_info(server.stage, info), BASELINE)
    return None


def pytest_minigram_provide(config: pytest.Config, name: str) -> dict[str, Any] | None:
    harness: Harness = config.stash[HARNESS]
    return harness.provide(name)


def pytest_minigram_describe_targets(config: pytest.Config) -> dict[str, Any]:
    harness: Harness = config.stash[HARNESS]
    servers: dict[str, Any] = {}
    if harness._pool is not None:
        servers = {st.stage: {"backends": st.backends, "seed": st.seed}
                   for st in harness._pool.running(HEAD)}
    return {"stages": list(harness.settings.stages), "servers": servers}
