"""What the plugin knows about the service a load goes to.

A test names its target by URL (the ``minigram_target`` fixture). A harness that started the
service, such as the Minigram harness, can say more through the
``pytest_minigram_target_info`` hook: which processes serve it (one per round), what its
journeys need to know (seed sizes), how to tell it died, and what to call it in the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest


def _always_alive() -> bool:
    return True


def _no_check() -> None:
    return None


@dataclass
class TargetInfo:
    """A target as the conductor uses it.

    ``urls``: round r of a load goes to ``urls[r % len(urls)]``. ``variant`` is recorded as
    the test's ``stage``. ``alive`` is polled during the load (cheaply: no HTTP request);
    ``check`` runs after it and raises `pytest_minigram.server.ServerDied` with the details.
    ``pids`` are local processes whose CPU time the results record. ``health_url`` (``GET``
    answers below 500 while the service is up) is what the xdist controller polls while its
    workers load the target: nothing about a server is checked by pid on another machine.
    """

    urls: list[str]
    variant: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    health_url: str | None = None  # polled by the xdist controller during distributed loads
    alive: Callable[[], bool] = _always_alive
    check: Callable[[], None] = _no_check

    @property
    def url(self) -> str:
        return self.urls[0]


def target_info(request: pytest.FixtureRequest, url: str, side: str = "head") -> TargetInfo:
    """Ask the harnesses about ``url``; a plain URL when none knows it."""
    info = request.config.hook.pytest_minigram_target_info(request=request, url=url, side=side)
    return info if info is not None else TargetInfo(urls=[url])
