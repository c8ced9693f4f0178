"""What differs between stages: health, caches and their invalidation, Redis and PostgreSQL
outages; and what every response carries: Server-Timing, JSON errors, security headers."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import time

import pytest
import redis as redis_lib

from minigram import queries
from minigram.app import create_app
from minigram.timing import sleep_precisely

TIMING_RE = re.compile(
    r"^db;dur=(\d+\.\d\d), cache;dur=(\d+\.\d\d), hash;dur=(\d+\.\d\d), app;dur=(\d+\.\d\d), "
    r"total;dur=(\d+\.\d\d)$"
)


def server_timing(response) -> dict[str, float]:
    match = TIMING_RE.match(response.headers["server-timing"])
    assert match, response.headers["server-timing"]
    timing = dict(zip(("db", "cache", "hash", "app", "total"), map(float, match.groups()),
                      strict=True))
    parts = timing["db"] + timing["cache"] + timing["hash"] + timing["app"]
    assert abs(parts - timing["total"]) <= 0.05, timing  # the parts add up (rounding aside)
    return timing


# --- health ----------------------------------------------------------------------------


def test_healthz_reports_each_component(app_client, app_stage):
    response = app_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["stage"] == app_stage
    assert body["components"]["db"]["status"] == "ok"
    expected = {"1": "disabled", "1.5": "ok", "2": "ok"}[app_stage]
    assert body["components"]["cache"]["status"] == expected


def test_healthz_is_503_when_the_database_is_down(
    app_settings_factory, test_client_factory, app_free_port
):
    settings = app_settings_factory(
        "2", database_url=f"postgresql://postgres@127.0.0.1:{app_free_port}/nothing"
    )
    client = test_client_factory(create_app(settings))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    assert response.json()["components"]["db"]["status"] == "down"
    assert response.json()["components"]["cache"]["status"] == "ok"
    # API calls answer 503 too, never 500
    register = client.post("/api/register", json={"username": "alice", "password": "password1"})
    assert register.status_code == 503
    assert register.json()["error"] == "database_unavailable"
    assert "retry-after" in register.headers


# --- headers and errors on every response ----------------------------------------------


def test_every_response_has_server_timing_and_security_headers(app_client, api):
    alice = api.user("alice")
    photo = api.photo(alice)
    responses = [
        app_client.post("/api/register", json={"username": "bob", "password": "password1"}),
        app_client.post("/api/login", json={"username": "bob", "password": "password1"}),
        app_client.get("/api/feed", headers=alice.headers),
        app_client.get(photo["url"]),
        app_client.get("/healthz"),
        app_client.get("/metrics"),
        app_client.get("/metrics.html"),
        app_client.get("/nowhere"),
        app_client.put("/api/feed"),
        app_client.get("/api/feed"),
        app_client.post("/api/register", json={}),
    ]
    for response in responses:
        server_timing(response)
        assert response.headers["x-content-type-options"] == "nosniff"
    assert server_timing(responses[0])["hash"] > 0
    assert server_timing(responses[0])["db"] > 0
    assert server_timing(responses[2])["app"] > 0


def test_unknown_route_and_wrong_method_are_json(app_client):
    response = app_client.get("/api/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no route for GET /api/nope"}
    response = app_client.put("/api/photos/1")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "allow" in response.headers
    response = app_client.get("/api/register")
    assert response.status_code == 405


def test_a_server_bug_is_still_a_json_500_with_timing(
    app_settings, test_client_factory, api, monkeypatch
):
    client = test_client_factory(create_app(app_settings), raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(queries, "profile", broken)
    response = client.get("/api/users/alice")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    server_timing(response)


def test_metrics_and_live_page(app_client, api):
    api.user("alice")
    text = app_client.get("/metrics").text
    assert 'minigram_requests_total{endpoint="register",method="POST",status="201"}' in text
    assert "minigram_request_duration_seconds_bucket" in text
    assert 'minigram_component_seconds_total{component="hash"}' in text
    page = app_client.get("/metrics.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'fetch("/metrics"' in page.text


def test_faults_add_delay_and_cpu_to_named_endpoints(app_settings_factory, test_client_factory):
    settings = app_settings_factory(
        "1", faults="feed:delay=200ms;profile:delay=100%;login:cpu=30ms"
    )
    client = test_client_factory(create_app(settings))
    client.post("/api/register", json={"username": "alice", "password": "password1"})
    login = client.post("/api/login", json={"username": "alice", "password": "password1"})
    assert server_timing(login)["app"] >= 30
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    started = time.perf_counter()
    feed = client.get("/api/feed", headers=headers)
    assert time.perf_counter() - started >= 0.2
    assert server_timing(feed)["app"] >= 200
    profile = server_timing(client.get("/api/users/alice"))
    assert profile["app"] >= 2 * profile["db"]
    healthz = server_timing(client.get("/healthz"))
    assert healthz["app"] < 200  # no fault on healthz


def test_an_injected_delay_is_as_long_as_asked_and_lets_other_requests_run():
    """delay=25% of a 2 ms handler is 0.5 ms; the loop's millisecond timers would make it 1.1."""
    async def measure() -> tuple[list[float], int]:
        ticks = 0
        done = False

        async def other_request() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_request())
        took = []
        for _ in range(31):
            t0 = time.perf_counter()
            await sleep_precisely(0.0004)
            took.append(time.perf_counter() - t0)
        done = True
        await other
        return took, ticks

    took, ticks = asyncio.run(measure())
    assert min(took) >= 0.0004
    assert statistics.median(took) < 0.0009
    assert ticks > 31  # the other task ran during the sleeps


# --- caches ----------------------------------------------------------------------------


def test_repeated_feed_reads_hit_the_cache_on_stages_1_5_and_2(app_client, api, app_stage):
    alice, bob = api.user("alice"), api.user("bob")
    api.follow(alice, bob)
    api.photo(bob)
    first = app_client.get("/api/feed", headers=alice.headers)
    second = app_client.get("/api/feed", headers=alice.headers)
    assert first.json() == second.json()
    if app_stage == "1":
        assert server_timing(second)["db"] > 0
        assert server_timing(second)["cache"] == 0
    else:
        assert server_timing(second)["db"] == 0
        assert server_timing(second)["cache"] > 0


def test_writes_invalidate_exactly_what_they_change(app_client, api):
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    api.follow(alice, bob)
    photo = api.photo(bob)

    def feed(account=alice):
        return app_client.get("/api/feed", headers=account.headers).json()["photos"]

    assert feed()[0]["likes"] == 0  # now cached
    app_client.post(f"/api/photos/{photo['id']}/like", headers=alice.headers)
    assert (feed()[0]["likes"], feed()[0]["liked"]) == (1, True)
    app_client.post(f"/api/photos/{photo['id']}/like", headers=carol.headers)
    assert (feed()[0]["likes"], feed()[0]["liked"]) == (2, True)
    app_client.delete(f"/api/photos/{photo['id']}/like", headers=alice.headers)
    assert (feed()[0]["likes"], feed()[0]["liked"]) == (1, False)
    assert app_client.get(f"/api/photos/{photo['id']}").json()["likes"] == 1

    newer = api.photo(bob)
    assert [p["id"] for p in feed()] == [newer["id"], photo["id"]]
    assert app_client.get("/api/users/bob").json()["photos"] == 2
    app_client.delete(f"/api/photos/{newer['id']}", headers=bob.headers)
    assert [p["id"] for p in feed()] == [photo["id"]]
    assert app_client.get("/api/users/bob").json()["photos"] == 1

    assert app_client.get("/api/users/bob").json()["followers"] == 1
    api.follow(carol, bob)
    assert app_client.get("/api/users/bob").json()["followers"] == 2
    assert [p["id"] for p in feed(carol)] == [photo["id"]]
    app_client.delete("/api/users/bob/follow", headers=alice.headers)
    assert feed() == []
    assert app_client.get("/api/users/alice").json()["following"] == 0


def test_stage_2_keys_all_carry_the_prefix(app_settings_factory, test_client_factory, api_factory):
    settings = app_settings_factory("2")
    client = test_client_factory(create_app(settings))
    api = api_factory(client)
    alice, bob = api.user("alice"), api.user("bob")
    api.follow(alice, bob)
    api.photo(bob)
    client.get("/api/feed", headers=alice.headers)
    client.get("/api/users/bob")
    raw = redis_lib.Redis.from_url(settings.redis_url)
    keys = [k.decode() for k in raw.scan_iter(match=settings.redis_prefix + "*")]
    raw.close()
    # <prefix><epoch>:<name>:...
    names = {key[len(settings.redis_prefix) :].split(":")[1] for key in keys}
    assert {"tok", "photo", "likes", "liked", "feed", "feedver", "profile"} <= names


# --- Redis outages on stage 2 ----------------------------------------------------------


def _exercise(client, api) -> None:
    """Every endpoint once; each must succeed."""
    alice, bob = api.user(), api.user()
    api.follow(alice, bob)
    photo = api.photo(bob)
    assert client.post(f"/api/photos/{photo['id']}/like", headers=alice.headers).status_code == 200
    feed = client.get("/api/feed", headers=alice.headers)
    assert feed.status_code == 200
    assert feed.json()["photos"][0]["liked"] is True
    assert client.get(f"/api/photos/{photo['id']}").status_code == 200
    assert client.get(photo["url"]).status_code == 200
    assert client.get(f"/api/users/{bob.username}").json()["photos"] == 1
    for path, account in (
        (f"/api/photos/{photo['id']}/like", alice),
        (f"/api/users/{bob.username}/follow", alice),
        (f"/api/photos/{photo['id']}", bob),
    ):
        assert client.delete(path, headers=account.headers).status_code == 200
    assert client.post("/api/logout", headers=alice.headers).status_code == 200


def test_stage_2_without_redis_serves_from_the_database(
    app_settings_factory, test_client_factory, app_free_port, api_factory
):
    settings = app_settings_factory("2", redis_url=f"redis://127.0.0.1:{app_free_port}/0")
    client = test_client_factory(create_app(settings))
    started = time.perf_counter()
    _exercise(client, api_factory(client))
    assert time.perf_counter() - started < 5  # a dead Redis costs no seconds per request
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["components"]["cache"]["status"] == "degraded"
    assert health.json()["components"]["db"]["status"] == "ok"


@pytest.fixture
def throwaway_redis(app_free_port):
    """A redis-server of our own on a free port (never the shared one)."""
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(app_free_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis_lib.Redis(port=app_free_port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis_lib.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.02)
    yield client
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def test_stage_2_rides_out_a_redis_stall_without_serving_stale_data(
    app_settings_factory, test_client_factory, throwaway_redis, api_factory
):
    port = throwaway_redis.connection_pool.connection_kwargs["port"]
    settings = app_settings_factory("2", redis_url=f"redis://127.0.0.1:{port}/0")
    client = test_client_factory(create_app(settings))
    api = api_factory(client)
    alice, bob = api.user("alice"), api.user("bob")
    api.follow(alice, bob)
    photo = api.photo(bob)
    assert client.get("/api/feed", headers=alice.headers).json()["photos"][0]["likes"] == 0
    # every key the app wrote carries its prefix
    ours = list(throwaway_redis.scan_iter(settings.redis_prefix + "*"))
    assert throwaway_redis.dbsize() == len(ours) > 0

    # Redis stops answering, but keeps its (soon stale) data
    throwaway_redis.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    started = time.perf_counter()
    like = client.post(f"/api/photos/{photo['id']}/like", headers=alice.headers)
    assert like.status_code == 200
    feed = client.get("/api/feed", headers=alice.headers)
    assert feed.json()["photos"][0]["likes"] == 1
    assert time.perf_counter() - started < 1.2
    assert client.get("/healthz").json()["components"]["cache"]["status"] == "degraded"

    time.sleep(1.6)  # the pause ends; the circuit lets a call through again
    deadline = time.monotonic() + 5
    while client.get("/healthz").json()["status"] != "ok":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # the like made during the stall must show, not the cached count from before it
    photos = client.get("/api/feed", headers=alice.headers).json()["photos"]
    assert (photos[0]["likes"], photos[0]["liked"]) == (1, True)
    again = client.get("/api/feed", headers=alice.headers)
    assert server_timing(again)["db"] == 0  # and the cache is used again
    assert again.json()["photos"][0]["likes"] == 1


# --- /healthz: a short-lived answer, but a component going down shows within 1 s ------------


def test_healthz_reuses_its_answer_briefly(app_settings_factory, test_client_factory, monkeypatch):
    from minigram.db import Database

    pings = 0
    ping = Database.ping

    def counted(self: Database) -> None:
        nonlocal pings
        pings += 1
        ping(self)

    monkeypatch.setattr(Database, "ping", counted)
    client = test_client_factory(create_app(app_settings_factory("1.5")))
    started = time.monotonic()
    for _ in range(50):
        assert client.get("/healthz").json()["status"] == "ok"
    elapsed = time.monotonic() - started
    # one check per HEALTH_TTL (0.5 s) at most, not one per call
    assert 1 <= pings <= 2 + int(elapsed / 0.5)
    assert pings < 50


def test_healthz_shows_redis_going_down_within_1s(
    app_settings_factory, test_client_factory, throwaway_redis
):
    port = throwaway_redis.connection_pool.connection_kwargs["port"]
    settings = app_settings_factory("2", redis_url=f"redis://127.0.0.1:{port}/0")
    client = test_client_factory(create_app(settings))
    assert client.get("/healthz").json()["status"] == "ok"  # the answer is now cached
    throwaway_redis.shutdown(nosave=True)
    stopped = time.monotonic()
    while client.get("/healthz").json()["components"]["cache"]["status"] != "degraded":
        assert time.monotonic() - stopped < 1.0, "a stopped Redis did not show within 1 s"
        time.sleep(0.01)
