"""Cache effect: database queries per user journey and the cache hit ratio.

The seed claimed "no caching resulted in 4.38 unnecessary DB hits per user". The app counts
every SQL statement (``minigram_db_queries_total``, from a SQLAlchemy ``before_cursor_execute``
event) and every cache lookup (``minigram_cache_lookups_total{result=hit|miss}``); the test
reads both from ``/metrics`` before and after a fixed number of journeys. The same code runs
on every stage, so stage 1 (no cache) is the "without cache" reference for stage 2's Redis.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from pytest_minigram.minigram_harness.plugin import HARNESS
from pytest_minigram.plugin.conductor import LoadSpec
from pytest_minigram.plugin.fixtures import CONDUCTOR
from pytest_minigram.plugin.targets import TargetInfo

pytestmark = [pytest.mark.perf, pytest.mark.cache]

# one user: stage 1 fails overlapping writes, and the count per journey needs none
USERS, ITERATIONS = 1, 8  # 8 journeys, whatever --minigram-duration says
SAMPLE = re.compile(r'^(minigram_db_queries_total|minigram_cache_lookups_total)\{(\w+)="(\w+)"\}'
                    r" ([0-9.e+]+)$", re.M)


def counters(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for name, _label, value, number in SAMPLE.findall(text):
        key = ("db." if name.startswith("minigram_db") else "cache.") + value
        out[key] = out.get(key, 0.0) + float(number)
    return out


def per_journey(url: str, run: Any, journey: str) -> dict[str, float]:
    before = counters(url)
    result = run(journey)
    after = counters(url)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}
    journeys = result.iterations
    assert journeys >= USERS * ITERATIONS * 0.9, f"{journeys} journeys ran: {result.errors}"
    queries = sum(v for k, v in delta.items() if k.startswith("db."))
    hits, misses = delta.get("cache.hit", 0.0), delta.get("cache.miss", 0.0)
    return {"journeys": journeys, "errors": result.error_rate,
            "queries_per_journey": round(queries / journeys, 2),
            "selects_per_journey": round(delta.get("db.select", 0.0) / journeys, 2),
            "lookups_per_journey": round((hits + misses) / journeys, 2),
            "hit_ratio": round(hits / (hits + misses), 3) if hits + misses else 0.0}


@pytest.mark.parametrize("journey", ["browse", "realistic"])
def test_queries_per_journey(minigram_load: Any, minigram_server: Any,
                             request: pytest.FixtureRequest, journey: str) -> None:
    stage = minigram_server.stage

    def run(name: str) -> Any:
        return minigram_load(name, users=USERS, iterations=ITERATIONS)

    # warm the cache (and the uncached stage alike) so both measure the steady state
    minigram_load(journey, users=USERS, iterations=1)
    mine = per_journey(minigram_server.url, run, journey)
    print(f"stage {stage} {journey}: {mine}")
    assert mine["errors"] < 0.01
    assert mine["queries_per_journey"] > 0, "the counter counts"
    if stage == "1":
        assert mine["lookups_per_journey"] == 0, "stage 1 has no cache"
        return
    assert mine["lookups_per_journey"] > 0
    if journey == "browse":
        assert mine["hit_ratio"] >= 0.5, mine
    harness = request.config.stash[HARNESS]
    if stage != "2" or "1" not in harness.settings.stages:
        return
    # Without a cache: the same journeys on stage 1, the same code over a NullCache.
    info = harness.info("1")
    stage1 = TargetInfo(urls=[info["url"]], variant="1",
                        params={"seed_users": info.get("seed", {}).get("users", 100)})

    def run_uncached(name: str) -> Any:
        _record, result = request.config.stash[CONDUCTOR].run_load(
            request.node, name, stage1, [], LoadSpec(users=USERS, iterations=ITERATIONS))
        return result

    run_uncached(journey)
    bare = per_journey(info["url"], run_uncached, journey)
    saved = bare["selects_per_journey"] - mine["selects_per_journey"]
    print(f"stage 1 (no cache) {journey}: {bare}; stage 2's cache saves {saved:.2f} "
          "SELECTs per journey")
    assert bare["lookups_per_journey"] == 0
    assert saved > 0, f"the cache spares reads: with {mine}, without {bare}"
    if journey == "browse":
        assert mine["selects_per_journey"] <= 0.5 * bare["selects_per_journey"], (mine, bare)
