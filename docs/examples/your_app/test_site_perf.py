import pytest

from pytest_minigram import Journey, task


class Visit(Journey):
    """A visitor opens the listing now and then and reads the page three times as often."""

    think_time = (0.05, 0.1)

    @task(1)
    async def listing(self, user):
        await user.get("/", name="listing")

    @task(3)
    async def page(self, user):
        await user.get("/index.html", name="page")


@pytest.mark.perf
def test_site_holds_10_users(minigram_load):
    result = minigram_load(Visit, users=10, duration="12s")
    result.check("error_rate < 1%", "p95 < 500ms", "page.p95 < 500ms")
    assert result.throughput > 20


@pytest.mark.perf(journey=Visit, rate=20, duration="12s",
                  slo=["error_rate < 1%", "p99 < 1s", "dropped_iterations == 0"])
def test_site_at_20_arrivals_per_second():
    """Declarative: an open workload at 20 arrivals/s; the marker is the whole test."""
