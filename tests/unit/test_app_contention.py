"""Concurrent writes against a real server: stage 1 fails them the seed's way (503
"database is locked" with Retry-After, never a 500 or a hang); 1.5 and 2 absorb the same load."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from minigram.app import create_app

WRITERS = 12
ROUNDS = 6


def _setup(base: str, make_image) -> tuple[list[dict[str, str]], list[int], list[str]]:
    session = requests.Session()
    headers, names = [], []
    for i in range(WRITERS + 2):
        name = f"writer_{i}"
        body = {"username": name, "password": "password123"}
        assert session.post(f"{base}/api/register", json=body, timeout=10).status_code == 201
        token = session.post(f"{base}/api/login", json=body, timeout=10).json()["token"]
        headers.append({"Authorization": f"Bearer {token}"})
        names.append(name)
    photo_ids = []
    for owner in headers[-2:]:
        for _ in range(3):
            response = session.post(
                f"{base}/api/photos",
                headers=owner,
                files={"file": ("a.png", make_image(), "image/png")},
                timeout=10,
            )
            assert response.status_code == 201
            photo_ids.append(response.json()["id"])
    return headers[:WRITERS], photo_ids, names[-2:]


def _hammer(base: str, headers, photo_ids, targets) -> list[tuple[int, str | None, str]]:
    """Every writer likes, unlikes and follows at once; (status, Retry-After, error) each."""
    start = threading.Barrier(WRITERS)

    def writer(i: int) -> list[tuple[int, str | None, str]]:
        session = requests.Session()
        seen = []
        start.wait()
        for r in range(ROUNDS):
            pid = photo_ids[(i + r) % len(photo_ids)]
            target = targets[(i + r) % len(targets)]
            for method, path in (
                ("POST", f"/api/photos/{pid}/like"),
                ("DELETE", f"/api/photos/{pid}/like"),
                ("POST" if r % 2 == 0 else "DELETE", f"/api/users/{target}/follow"),
            ):
                response = session.request(method, base + path, headers=headers[i], timeout=30)
                error = response.json().get("error", "") if response.status_code >= 400 else ""
                seen.append((response.status_code, response.headers.get("retry-after"), error))
        return seen

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    return [item for per_writer in results for item in per_writer]


def _load(stage, app_settings_factory, thread_server_factory, make_image):
    settings = app_settings_factory(stage)
    server = thread_server_factory(create_app(settings))
    headers, photo_ids, targets = _setup(server.url, make_image)
    return _hammer(server.url, headers, photo_ids, targets)


def test_stage_1_answers_503_with_retry_after_under_concurrent_writes(
    app_settings_factory, thread_server_factory, make_image
):
    outcomes = _load("1", app_settings_factory, thread_server_factory, make_image)
    statuses = Counter(status for status, _, _ in outcomes)
    assert len(outcomes) == WRITERS * ROUNDS * 3
    assert statuses[503] > 0, statuses
    assert set(statuses) <= {200, 503}, statuses
    for status, retry_after, error in outcomes:
        if status == 503:
            assert error == "database_locked"
            assert retry_after is not None and int(retry_after) > 0


def test_stage_1_5_answers_2xx_to_the_same_load(
    app_settings_factory, thread_server_factory, make_image
):
    outcomes = _load("1.5", app_settings_factory, thread_server_factory, make_image)
    assert Counter(status for status, _, _ in outcomes) == {200: WRITERS * ROUNDS * 3}


def test_stage_2_answers_2xx_to_the_same_load(
    app_settings_factory, thread_server_factory, make_image
):
    outcomes = _load("2", app_settings_factory, thread_server_factory, make_image)
    assert Counter(status for status, _, _ in outcomes) == {200: WRITERS * ROUNDS * 3}
