"""Shared helpers of the perf suite (tests/perf): load pacing and a journey workaround."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_minigram.minigram_harness import journeys as minigram_journeys

SUITE_MARKERS = {
    "operations": "single-endpoint runs with Server-Timing attribution (-m operations)",
    "cache": "database queries per journey and the cache hit ratio (-m cache)",
}
_FRESH = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    for name, text in SUITE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")

_TAG = os.urandom(3).hex()


def _fresh_username(user: Any) -> str:
    # Workaround: the shipped helper names new users by (process tag, user id, count), and
    # user ids restart at 0 in every load, so the second load of a session re-registers the
    # first one's names and gets 409 username_taken. A process-wide counter never repeats.
    return f"lt{_TAG}_{next(_FRESH):x}"


@pytest.fixture(autouse=True)
def _unique_new_usernames(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(minigram_journeys, "_fresh_username", _fresh_username)
    yield

