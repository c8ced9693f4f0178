"""Breaking points: the most users (closed model) and the highest arrival rate (open model)
each stage serves within the SLOs, found by ``minigram_breaking_point``.

Each search ramps geometrically, then bisects over short steps until the bracket is within
``RESOLUTION``; the test reports the value with its bracket [passed, failed). Users here have
no think time: ``users`` is how many visitors hammer the realistic journey back to back, the
seed's "maximum concurrent users"; ``rate`` is how many new visits per second arrive.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.perf, pytest.mark.breaking]

SLO = ["error_rate < 1%", "p95 < 500ms"]
RESOLUTION = 0.25
STEP = "6s"  # scaled by --minigram-duration


def report(kind: str, stage: str, bp: Any) -> None:
    steps = ", ".join(f"{s.load:g}{'+' if s.passed else '-'}" for s in bp.steps)
    print(f"stage {stage} breaking {kind}: {bp} [{steps}]")


def test_breaking_users(minigram_breaking_point: Any, minigram_server: Any) -> None:
    stage = minigram_server.stage
    bp = minigram_breaking_point("realistic", slo=SLO, users=(1, 64), step_duration=STEP,
                                 resolution=RESOLUTION, max_steps=8)
    report("users", stage, bp)
    assert bp.value is not None, f"one user alone must meet the SLOs on stage {stage}: {bp}"
    if stage == "1":
        # overlapping writes fail without a busy timeout: a handful of users breaks it
        assert bp.high is not None and bp.high <= 8, bp


def test_breaking_rate(minigram_breaking_point: Any, minigram_server: Any) -> None:
    stage = minigram_server.stage
    bp = minigram_breaking_point("realistic", slo=SLO, rate=(0.5, 32), step_duration=STEP,
                                 resolution=RESOLUTION, max_steps=8)
    report("rate", stage, bp)
    assert bp.value is not None, f"0.5 visits/s must meet the SLOs on stage {stage}: {bp}"
    # two bcrypt hashes per visit (~60 ms each on this machine's 2 cores) cap every stage far
    # below 32 visits/s: the search must find the ceiling, not run out of range
    assert bp.high is not None, bp
