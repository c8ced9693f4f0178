import pytest


@pytest.mark.perf
def test_site_holds_10_users(minigram_load):
    result = minigram_load("visit", users=10, duration="12s")
    result.check("error_rate < 1%", "p95 < 500ms", "page.p95 < 500ms")
    assert result.throughput > 20


@pytest.mark.perf(journey="visit", rate=20, duration="12s",
                  slo=["error_rate < 1%", "p99 < 1s", "dropped_iterations == 0"])
def test_site_at_20_arrivals_per_second():
    """Declarative: an open workload at 20 arrivals/s; the marker is the whole test."""
