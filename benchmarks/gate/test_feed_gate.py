"""The perf test that benchmarks/gate_power.py gates: the feed alone, one closed-model user.

Run by gate_power.py as a whole pytest session per gate run, with ``--minigram-duration``
(each round's length), ``--minigram-rounds``, ``--minigram-duet`` and
``--minigram-compare-fail``; see
docs/regression-gate.md for why one user and the feed alone.
"""

import pytest


@pytest.mark.perf(journey="feed", users=1, duration="3s", ramp_up="1s", slo=["error_rate < 1%"])
def test_feed():
    pass
