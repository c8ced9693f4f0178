"""Diagnostic: the first thing to run when something looks wrong (``-m diagnostic``, seconds).

Per stage: the server is healthy, every endpoint answers correctly, the seed data is there,
the cache is reachable where the stage has one, and ``Server-Timing`` and ``/metrics`` work.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from pytest_minigram.minigram_harness.api_client import MinigramClient
from pytest_minigram.minigram_harness.journeys import SEED_PASSWORD, png_bytes

pytestmark = [pytest.mark.perf, pytest.mark.diagnostic]

CACHE_BACKEND = {"1": "none", "1.5": "memory", "2": "redis"}
TIMING = re.compile(r"(\w+);dur=([0-9.]+)")


def server_timing(header: str) -> dict[str, float]:
    return {name: float(ms) for name, ms in TIMING.findall(header)}


def test_healthy_with_the_stage_cache(minigram_client: MinigramClient,
                                      minigram_server: Any) -> None:
    health = minigram_client.healthz()
    assert health["status"] == "ok", health
    assert health["stage"] == minigram_server.stage
    assert health["components"]["db"]["status"] == "ok"
    expected_db = "postgresql" if minigram_server.stage == "2" else "sqlite"
    assert health["components"]["db"]["backend"] == expected_db
    cache = health["components"]["cache"]
    assert cache["backend"] == CACHE_BACKEND[minigram_server.stage]
    # stage 2's Redis must answer: "degraded" would mean the app serves without its cache
    assert cache["status"] == ("disabled" if minigram_server.stage == "1" else "ok"), cache


def test_seed_data_present(minigram_client: MinigramClient, minigram_server: Any) -> None:
    users = minigram_server.seed.get("users", 0)
    assert users > 0 and minigram_server.seed.get("photos", 0) > 0, minigram_server.seed
    last = minigram_client.profile(f"seed_user_{users - 1}")
    assert last["username"] == f"seed_user_{users - 1}"
    minigram_client.profile(f"seed_user_{users}", expect=404)
    popular = minigram_client.profile("seed_user_0")
    assert popular["followers"] > 0 and popular["photos"] > 0, popular
    minigram_client.login("seed_user_1", SEED_PASSWORD)
    feed = minigram_client.feed(limit=20)
    assert len(feed["photos"]) == 20, "a seeded user follows the popular accounts"


def test_every_endpoint_answers(minigram_client: MinigramClient) -> None:
    c = minigram_client
    name = f"diag_{os.urandom(4).hex()}"
    assert c.register(name, "diagpass123")["username"] == name
    c.register(name, "diagpass123", expect=409)
    c.login(name, "wrongpassword", expect=401)
    assert c.login(name, "diagpass123")["user"]["username"] == name
    photo = c.upload(png_bytes(), caption="diagnostic", content_type="image/png")
    got = c.photo(photo["id"])
    assert got["owner"] == name and got["caption"] == "diagnostic"
    assert c.media(got["url"]) == png_bytes()
    assert c.like(photo["id"])["liked"] is True
    assert c.unlike(photo["id"])["liked"] is False
    assert c.follow("seed_user_0")["following"] is True
    assert c.unfollow("seed_user_0")["following"] is False
    assert c.follow("seed_user_0")["following"] is True
    assert c.feed(limit=5)["photos"], "following seed_user_0 fills the feed"
    assert c.profile(name)["photos"] == 1
    c.delete_photo(photo["id"])
    c.photo(photo["id"], expect=404)
    c.logout()
    c.feed(expect=401)


def test_server_timing_and_metrics(minigram_client: MinigramClient) -> None:
    resp = minigram_client.request("POST", "/api/login",
                                   json={"username": "seed_user_2", "password": SEED_PASSWORD})
    assert resp.status_code == 200
    parts = server_timing(resp.headers["Server-Timing"])
    assert set(parts) >= {"db", "cache", "hash", "app", "total"}, parts
    assert parts["hash"] > 1.0, f"login checks a bcrypt hash: {parts}"
    assert sum(parts[k] for k in ("db", "cache", "hash", "app")) == pytest.approx(
        parts["total"], abs=0.05)
    text = minigram_client.metrics()
    assert re.search(r'minigram_requests_total\{[^}]*endpoint="login"[^}]*\} [1-9]', text), \
        "the login above is counted"
    assert "minigram_request_duration_seconds_bucket" in text
    assert 'minigram_component_seconds_total{component="hash"}' in text
    page = minigram_client.request("GET", "/metrics.html")
    assert page.status_code == 200 and "<html" in page.text.lower()
