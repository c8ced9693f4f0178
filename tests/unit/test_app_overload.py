"""Overload: past its capacity a worker answers the excess at once with 503 + Retry-After
instead of queueing it, so the requests it does answer stay fast, its memory stays flat, and it
is back to normal as soon as the load drops."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from time import perf_counter
from typing import Any

import psutil
import pytest

from minigram.settings import Settings
from minigram.shedding import Limiter, LoadShedMiddleware
from pytest_minigram.load import Closed, Journey, RampingRate, VirtualUser, run
from pytest_minigram.load.registry import get_journey
from tests.unit.app_server import app_server

# --- the middleware on its own -----------------------------------------------------------


def _scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


class SlowApp:
    """An ASGI app whose requests finish when the test says so."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.running += 1
        await self.release.wait()
        self.running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, path: str = "/api/feed") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(path), receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_the_excess_is_shed_at_once_with_retry_after_and_the_queue_is_served_in_order():
    async def scenario() -> None:
        inner = SlowApp()
        app = LoadShedMiddleware(inner, max_concurrency=2, max_queue=1, queue_timeout=5)
        running = [asyncio.create_task(_call(app)) for _ in range(3)]  # 2 run, 1 waits
        await asyncio.sleep(0.05)
        assert inner.running == 2 and app.limiter is not None and app.limiter.queued == 1
        started = perf_counter()
        status, headers, body = await _call(app)  # the queue is full
        assert perf_counter() - started < 0.05
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"] == "overloaded"
        # monitoring is never queued or shed
        health = asyncio.create_task(_call(app, "/healthz"))
        await asyncio.sleep(0.05)
        assert inner.running == 3
        inner.release.set()
        results = await asyncio.gather(*running, health)
        assert [r[0] for r in results] == [200, 200, 200, 200]
        assert (app.limiter.active, app.limiter.queued, app.limiter.shed) == (0, 0, 1)

    asyncio.run(scenario())


def test_a_request_waits_at_most_the_queue_timeout():
    async def scenario() -> None:
        inner = SlowApp()
        app = LoadShedMiddleware(inner, max_concurrency=1, max_queue=10, queue_timeout=0.2)
        first = asyncio.create_task(_call(app))
        await asyncio.sleep(0.02)
        started = perf_counter()
        status, headers, _ = await _call(app)
        assert 0.18 < perf_counter() - started < 0.5
        assert status == 503 and headers["retry-after"] == "1"
        inner.release.set()
        assert (await first)[0] == 200
        assert app.limiter is not None and app.limiter.active == 0

    asyncio.run(scenario())


def test_a_slot_handed_over_as_the_waiter_gives_up_is_not_lost():
    async def scenario() -> None:
        limiter = Limiter(1, 5, 0.05)
        assert await limiter.acquire()
        for delay in (0.03, 0.049, 0.05, 0.051, 0.07):
            waiter = asyncio.create_task(limiter.acquire())
            await asyncio.sleep(delay)
            limiter.release()  # frees or hands over the slot about when the waiter gives up
            if await waiter:
                limiter.release()
            assert (limiter.active, limiter.queued) == (0, 0), delay
            assert await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()  # e.g. the client went away
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.queued == 0
        limiter.release()
        assert limiter.active == 0

    asyncio.run(scenario())


def test_shedding_settings_come_from_the_environment_and_zero_turns_it_off():
    settings = Settings.from_env(
        {"MINIGRAM_MAX_CONCURRENCY": "3", "MINIGRAM_MAX_QUEUE": "7",
         "MINIGRAM_QUEUE_TIMEOUT": "0.5"}
    )
    assert (settings.max_concurrency, settings.max_queue, settings.queue_timeout) == (3, 7, 0.5)
    assert Settings.from_env(settings.to_env()) == settings
    with pytest.raises(ValueError, match="MINIGRAM_QUEUE_TIMEOUT"):
        Settings.from_env({"MINIGRAM_QUEUE_TIMEOUT": "-1"})
    assert LoadShedMiddleware(SlowApp(), max_concurrency=0).limiter is None
    defaults = Settings.for_stage("1")
    assert defaults.max_concurrency >= 40  # above the threadpool: no throughput is lost


# --- a real server at three times its capacity -------------------------------------------

LIMIT, QUEUE, QUEUE_TIMEOUT = 8, 8, 0.25
#: The feed answers after >= 40 ms (a slow backend): capacity is then bounded by concurrency
#: (about LIMIT / 0.04 s), not by the CPU this machine shares with the load generator.
FEED_DELAY = "feed:delay=40ms"


async def _probe_feed(user: VirtualUser) -> None:
    started = perf_counter()
    response = await user.get("/api/feed", params={"limit": 20}, name="feed")
    error = None
    if response.status == 503:
        error = json.loads(response.body).get("error")
    user.params["samples"].append(
        (time.time(), response.status, perf_counter() - started,
         response.headers.get("retry-after"), error)
    )


PROBE = Journey("probe-feed", _probe_feed, on_start=get_journey("feed").on_start)


def _p95(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _breaking_point(url: str) -> tuple[int, float]:
    """Double the users until throughput stops growing by 15 %: (users, requests/s) there."""
    previous = 0.0
    users = 2
    while users <= 64:
        result = run(Closed(users=users, duration=1.5), get_journey("feed"), url,
                     params={"seed_users": 20})
        if result.error_rate > 0.01 or result.throughput < previous * 1.15:
            return users // 2, previous
        previous = result.throughput
        users *= 2
    return users // 2, previous


def test_three_times_the_breaking_point_is_shed_fast_and_recovers(tmp_path):
    with app_server(tmp_path / "data", "1.5", faults=FEED_DELAY, max_concurrency=LIMIT,
                    max_queue=QUEUE, queue_timeout=QUEUE_TIMEOUT) as server:
        knee_users, capacity = _breaking_point(server.url)
        assert LIMIT / 2 <= knee_users <= 4 * LIMIT, (knee_users, capacity)
        normal, overload = 0.5 * capacity, 3 * capacity
        phases = (4.0, 8.0, 8.0)  # before, overload, after
        workload = RampingRate(
            start_rate=normal, max_users=400,
            stages=[(normal, phases[0]), (overload, 0.01), (overload, phases[1] - 0.01),
                    (normal, 0.01), (normal, phases[2] - 0.01)],
        )
        samples: list[tuple[float, int, float, str | None, str | None]] = []
        rss: list[int] = []
        health: list[tuple[int, float]] = []
        stop = threading.Event()

        def watch() -> None:
            import urllib.request

            while not stop.wait(0.25):
                rss.append(server.rss())
                started = perf_counter()
                with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
                    health.append((response.status, perf_counter() - started))

        watcher = threading.Thread(target=watch, daemon=True)
        rss_before = server.rss()
        watcher.start()
        t0 = time.time()
        result = run(workload, PROBE, server.url, params={"seed_users": 20, "samples": samples})
        stop.set()
        watcher.join(timeout=10)
        server.process.check_alive()  # no crash
        assert psutil.Process(server.process.pid).status() != psutil.STATUS_ZOMBIE

    def phase(start: float, end: float) -> list[tuple[float, int, float, str | None, str | None]]:
        return [s for s in samples if t0 + start <= s[0] < t0 + end]

    before = phase(1.0, phases[0])
    during = phase(phases[0] + 1.0, phases[0] + phases[1])
    after = phase(phases[0] + phases[1], sum(phases))
    assert {s[1] for s in before} == {200}, sorted({s[1] for s in before})

    # overloaded: the excess is refused with 503 overloaded + Retry-After, nothing else fails
    shed = [s for s in during if s[1] == 503]
    answered = [s for s in during if s[1] == 200]
    assert len(shed) > 0.3 * len(during), (len(shed), len(during))
    assert {s[1] for s in during} <= {200, 503}, sorted({s[1] for s in during})
    assert all(s[3] == "1" and s[4] == "overloaded" for s in shed)
    assert _p95([s[2] for s in shed]) < 0.1  # refusing is fast
    # what is answered stays fast: at most a queue wait plus a few service times
    p95_before = _p95([s[2] for s in before])
    p95_during = _p95([s[2] for s in answered])
    # and the server keeps doing useful work (how much, against its capacity, is a figure
    # for benchmarks/faults.py, not an assertion on a shared machine)
    goodput = len(answered) / (phases[1] - 1.0)
    assert goodput > 0, (goodput, capacity)
    # memory is flat and monitoring answers
    assert max(rss) < rss_before + 100 * 2**20, (rss_before, max(rss))
    assert health and all(status == 200 for status, _ in health)

    # back to normal within 10 s of the load dropping: only 200s after that (the p95 after
    # against before is printed below, and measured by benchmarks/faults.py)
    recovered = next((s[0] for s in after if s[1] == 200), None)
    assert recovered is not None
    failures_late = [s for s in after if s[1] != 200 and s[0] > recovered]
    recovery = max([s[0] for s in failures_late], default=recovered) - (t0 + sum(phases[:2]))
    assert recovery < 10, recovery
    settled = [s for s in after if s[0] > t0 + sum(phases[:2]) + max(recovery, 0) + 1]
    assert {s[1] for s in settled} == {200}
    p95_after = _p95([s[2] for s in settled])
    figures = {
        "fault": "overload 3x", "capacity_rps": round(capacity), "knee_users": knee_users,
        "offered_rps": round(overload), "shed_fraction": round(len(shed) / len(during), 3),
        "shed_p95_ms": round(_p95([s[2] for s in shed]) * 1000, 1),
        "answered_rps": round(goodput), "answered_p95_ms": round(p95_during * 1000, 1),
        "p95_before_ms": round(p95_before * 1000, 1), "p95_after_ms": round(p95_after * 1000, 1),
        "rss_before_mib": round(rss_before / 2**20), "rss_max_mib": round(max(rss) / 2**20),
        "recovery_s": round(max(recovery, 0.0), 2), "requests": result.count,
    }
    print(f"\nfault-figures: {json.dumps(figures)}")
