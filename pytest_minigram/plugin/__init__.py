"""pytest-minigram's pytest plugin: wiring only (options, markers, hooks, the components).

The components, each in its own module: the `Conductor` runs loads (``conductor``), the
`Baseline` and `Verdicts` judge them (``baseline``, ``verdicts``), `SessionOutputs` writes
what the run leaves behind (``outputs``), `LiveSession` shows the running loads (``live``), and
``xdist`` meets the workers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.coordination import WORKERINPUT_ADDRESS
from pytest_minigram.plugin import hookspecs
from pytest_minigram.plugin import options as plugin_options
from pytest_minigram.plugin.baseline import Baseline
from pytest_minigram.plugin.conductor import Conductor
from pytest_minigram.plugin.fixtures import (  # noqa: F401  (fixtures are found by name)
    CONDUCTOR,
    _minigram_declarative,
    minigram_baseline_target,
    minigram_breaking_point,
    minigram_load,
    minigram_target,
    run_declarative,
    validate_marker,
)
from pytest_minigram.plugin.live import LIVE, LiveSession
from pytest_minigram.plugin.outputs import SessionOutputs
from pytest_minigram.plugin.signals import SigtermAsInterrupt
from pytest_minigram.plugin.verdicts import Verdicts
from pytest_minigram.plugin.xdist import XdistController, XdistWorker

SETTINGS = pytest.StashKey[plugin_options.Settings]()
WORKER = pytest.StashKey["XdistWorker | None"]()
CONTROLLER = pytest.StashKey["XdistController | None"]()
TMPDIR = pytest.StashKey[Path]()
_SIGTERM = pytest.StashKey[SigtermAsInterrupt]()

PERF_MARKER = (
    "perf(journey='realistic', users=N, duration='20s', rate=R, rounds=N, slo=[...]): a "
    "performance test. With keyword arguments it runs that load and checks the SLOs without "
    "a test body"
)

KIND_MARKERS = {
    "diagnostic": "a quick health check of a target (selected with -m diagnostic)",
    "stress": "a perf test at rising load levels (selected with -m stress)",
    "breaking": "a search for the highest load that meets the SLOs (selected with -m breaking)",
}


def settings(config: pytest.Config) -> plugin_options.Settings:
    """The generic plugin's effective settings (for harnesses and conftests)."""
    return config.stash[SETTINGS]


def xdist_worker(config: pytest.Config) -> XdistWorker | None:
    """This process's xdist worker role, or None on the controller or without xdist."""
    return config.stash.get(WORKER, None)


def session_tmpdir(config: pytest.Config) -> Path:
    """A directory for this session's files, removed at its end."""
    if TMPDIR not in config.stash:
        config.stash[TMPDIR] = Path(tempfile.mkdtemp(prefix="minigram-"))
    return config.stash[TMPDIR]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    plugin_options.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", PERF_MARKER)
    for name, text in KIND_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    s = plugin_options.resolve(config)
    config.stash[SETTINGS] = s
    workerinput = getattr(config, "workerinput", None)
    worker = (XdistWorker(workerinput)
              if workerinput and WORKERINPUT_ADDRESS in workerinput else None)
    config.stash[WORKER] = worker
    config.stash[CONTROLLER] = None
    config.stash[LIVE] = None
    baseline = Baseline(s)
    config.stash[CONDUCTOR] = Conductor(config, s, worker)
    verdicts = Verdicts(baseline, worker, lambda: config.stash.get(CONTROLLER, None))
    pm = config.pluginmanager
    pm.register(verdicts, "minigram-verdicts")
    if worker is not None:
        pm.register(worker, "minigram-xdist-worker")
    else:
        pm.register(SessionOutputs(config, s, baseline, verdicts,
                                   lambda: _describe_targets(config)), "minigram-outputs")
        guard = SigtermAsInterrupt()
        guard.install()
        config.stash[_SIGTERM] = guard
        live = config.stash[LIVE] = LiveSession(config, s)
        pm.register(live, "minigram-live")
        if pm.has_plugin("xdist"):
            # Registered whether or not -n is given: xdist's own trylast pytest_configure may
            # not have registered its "dsession" yet. These hooks fire only on a controller.
            host, port = s.coordinator
            controller = XdistController(
                config, host, port, s.advertise,
                lambda name: config.hook.pytest_minigram_provide(config=config, name=name),
                observer=live)
            live.stop_remote = controller.stop_test
            config.stash[CONTROLLER] = controller
            pm.register(controller, "minigram-xdist")
    for journeys in config.hook.pytest_minigram_add_journeys(config=config):
        for journey in journeys or ():
            from pytest_minigram.load.registry import register_journey

            register_journey(journey)


def _describe_targets(config: pytest.Config) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for answer in config.hook.pytest_minigram_describe_targets(config=config):
        described.update(answer or {})
    return described


def pytest_unconfigure(config: pytest.Config) -> None:
    worker = config.stash.get(WORKER, None)
    if worker is not None:
        worker.close()
    controller = config.stash.get(CONTROLLER, None)
    if controller is not None:
        controller.close()
    live = config.stash.get(LIVE, None)
    if live is not None:
        live.close()
    guard = config.stash.get(_SIGTERM, None)
    if guard is not None:
        guard.uninstall()
    tmp = config.stash.get(TMPDIR, None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash[SETTINGS]
    workers = config.getoption("numprocesses", None) or 0
    scale = f"users x{s.users_factor:g}, rate x{s.rate_factor:g}, duration " + (
        f"{s.fixed_duration:g}s" if s.fixed_duration else f"x{s.duration_factor:g}")
    rounds = f"; {s.rounds} rounds per perf test" if s.rounds > 1 else ""
    specs = [str(t) for t in (config.getoption("tx", None) or [])]
    if workers:
        where = f"{workers} xdist workers on this host"
    elif specs:
        remote = sum(1 for t in specs if t.startswith("ssh") or "ssh=" in t)
        where = (f"{len(specs)} xdist workers" + (f", {remote} over ssh" if remote else
                                                   " on this host"))
    else:
        where = "1 (this process)"
    return [f"minigram: {scale}{rounds}", f"minigram: generator processes: {where}"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        validate_marker(item)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    res = yield
    run_declarative(pyfuncitem)
    return res
