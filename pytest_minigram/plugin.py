"""pytest-minigram's pytest plugin: options, markers, hookspecs and the session object."""

from __future__ import annotations

import pytest

from pytest_minigram import hookspecs, plugin_options
from pytest_minigram.fixtures import (  # noqa: F401  (fixtures are found by name)
    _minigram_declarative,
    minigram_baseline_target,
    minigram_breaking_point,
    minigram_client,
    minigram_load,
    minigram_server,
    minigram_session,
    minigram_stage,
    minigram_target,
)
from pytest_minigram.plugin_session import (
    SESSION_KEY,
    MinigramSession,
    XdistHooks,
    register_journeys,
)

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


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    plugin_options.add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", PERF_MARKER)
    for name, text in KIND_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    settings = plugin_options.resolve(config)
    session = MinigramSession(config, settings)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "minigram-session")
    if config.pluginmanager.has_plugin("xdist") and not session.is_worker:
        # Registered whether or not -n is given: xdist's own trylast pytest_configure may not
        # have registered its "dsession" yet. These hooks only fire on an xdist controller.
        config.pluginmanager.register(XdistHooks(session), "minigram-xdist")
    register_journeys(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        config.pluginmanager.unregister(session)
        session.close()
        del config.stash[SESSION_KEY]
