"""Extension points of pytest-minigram.

Implement them in a ``conftest.py`` or a plugin. Each hook has a default implementation in the
plugin; a ``firstresult`` hook takes the first non-``None`` answer, so a conftest can override it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_minigram.load import Journey, Result


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


@pytest.hookspec(firstresult=True)
def pytest_minigram_seed_data(config: pytest.Config, stage: str) -> dict[str, int] | None:
    """Return the seed data sizes for a Minigram server of ``stage``.

    The answer is a dict with ``users`` and ``photos``. The default comes from
    ``--minigram-seed-users`` and ``--minigram-seed-photos``.

    Example::

        def pytest_minigram_seed_data(config, stage):
            return {"users": 2000, "photos": 20000} if stage == "2" else None
    """


@pytest.hookspec
def pytest_minigram_result(config: pytest.Config, nodeid: str, stage: str | None,
                           result: Result) -> None:
    """Called with every merged load result, for custom exporters.

    With xdist it is called once per perf test, in the worker that reports the verdict.

    Example::

        def pytest_minigram_result(config, nodeid, stage, result):
            statsd.gauge(f"perf.{stage}.p95", result.p95)
    """


@pytest.hookspec
def pytest_minigram_run_finished(config: pytest.Config, run: dict[str, Any]) -> None:
    """Called on the controller once with the whole run (the results-file dict) at the end."""
