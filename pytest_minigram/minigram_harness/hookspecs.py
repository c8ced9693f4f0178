"""Extension points of the Minigram harness."""

from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_minigram_seed_data(config: pytest.Config, stage: str) -> dict[str, int] | None:
    """Return the seed data sizes for a Minigram server of ``stage``.

    The answer is a dict with ``users`` and ``photos``. The default comes from
    ``--minigram-seed-users`` and ``--minigram-seed-photos``.

    Example::

        def pytest_minigram_seed_data(config, stage):
            return {"users": 2000, "photos": 20000} if stage == "2" else None
    """


