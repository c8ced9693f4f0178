"""Extension points of pytest-minigram.

Implement them in a ``conftest.py`` or a plugin. Each hook has a default implementation in the
plugin; a ``firstresult`` hook takes the first non-``None`` answer, so a conftest can override it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_minigram.load import Journey, Result
    from pytest_minigram.plugin.targets import TargetInfo


@pytest.hookspec
def pytest_minigram_add_journeys(config: pytest.Config) -> list[Journey] | None:
    """Return journeys to register, so tests can name them in ``minigram_load("name")``.

    Example::

        from pytest_minigram.load import Journey

        async def checkout(user):
            await user.get("/api/feed", name="feed")

        def pytest_minigram_add_journeys(config):
            return [Journey("checkout", checkout)]
    """


@pytest.hookspec
def pytest_minigram_result(config: pytest.Config, nodeid: str, stage: str | None,
                           result: Result) -> None:
    """Called with every merged load result, for custom exporters.

    With xdist it is called once per load, on the first worker of the load.

    Example::

        def pytest_minigram_result(config, nodeid, stage, result):
            statsd.gauge(f"perf.{stage}.p95", result.p95)
    """


@pytest.hookspec
def pytest_minigram_run_finished(config: pytest.Config, run: dict[str, Any]) -> None:
    """Called on the controller once with the whole run (the results-file dict) at the end."""


@pytest.hookspec(firstresult=True)
def pytest_minigram_target_info(request: pytest.FixtureRequest, url: str,
                                side: str) -> TargetInfo | None:
    """Describe the target at ``url`` (``side`` is ``head`` or ``baseline``), if you run it.

    A harness that starts the service answers with a `pytest_minigram.plugin.targets.TargetInfo`:
    one URL per server process (round r of a load goes to the r-th), a liveness check polled
    during the load, a check after it, journey parameters, and the name recorded as the
    test's ``stage``. The Minigram harness answers for its servers. Without an answer the
    load goes to ``url`` alone.

    Example::

        def pytest_minigram_target_info(request, url, side):
            if url == MY_SERVICE.url:
                return TargetInfo(urls=[url], variant="canary", alive=MY_SERVICE.alive)
    """


@pytest.hookspec(firstresult=True)
def pytest_minigram_provide(config: pytest.Config, name: str) -> Any:
    """On the xdist controller: start (once) what xdist workers ask for under ``name``.

    A worker asks with ``pytest_minigram.plugin.xdist_worker(config).provided(name)``; the
    first ask of a name calls this hook on the controller, in a thread of its own, and every
    worker gets the same JSON-able answer. This is how a service is started once for all
    workers, on whichever machines they run. The Minigram harness answers ``stage:2`` and the
    like with the server's URLs.

    Example (a conftest)::

        def pytest_minigram_provide(config, name):
            if name == "my-service":
                server = start_my_service()           # stopped in pytest_unconfigure
                return {"url": server.url}

        @pytest.fixture
        def minigram_target(pytestconfig):
            worker = xdist_worker(pytestconfig)
            if worker is not None:
                return worker.provided("my-service")["url"]
            ...
    """


@pytest.hookspec
def pytest_minigram_describe_targets(config: pytest.Config) -> dict[str, Any] | None:
    """At the end of the session: what the harnesses started, for the results' environment."""
