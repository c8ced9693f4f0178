"""Likes and follows: idempotent, answering with the new state, and only ever your own."""

from __future__ import annotations

import pytest


def test_like_and_unlike_are_idempotent(app_client, api):
    alice, bob = api.user("alice"), api.user("bob")
    photo = api.photo(alice)
    url = f"/api/photos/{photo['id']}/like"
    for _ in range(2):
        response = app_client.post(url, headers=bob.headers)
        assert response.status_code == 200
        assert response.json() == {"liked": True, "likes": 1}
    response = app_client.post(url, headers=alice.headers)
    assert response.json() == {"liked": True, "likes": 2}
    for _ in range(2):
        response = app_client.delete(url, headers=bob.headers)
        assert response.status_code == 200
        assert response.json() == {"liked": False, "likes": 1}


def test_unlike_never_removes_someone_elses_like(app_client, api):
    alice, bob, mallory = api.user("alice"), api.user("bob"), api.user("mallory")
    photo = api.photo(alice)
    url = f"/api/photos/{photo['id']}/like"
    app_client.post(url, headers=bob.headers)
    response = app_client.delete(url, headers=mallory.headers)
    assert response.status_code == 200
    assert response.json() == {"liked": False, "likes": 1}
    as_bob = app_client.get(f"/api/photos/{photo['id']}", headers=bob.headers).json()
    assert as_bob["liked"] is True and as_bob["likes"] == 1


@pytest.mark.parametrize("method", ["POST", "DELETE"])
@pytest.mark.parametrize("photo_id", ["12345", "0", "2147483648", "99999999999999999999"])
def test_like_unknown_photo_is_404(app_client, api, method, photo_id):
    bob = api.user("bob")
    response = app_client.request(method, f"/api/photos/{photo_id}/like", headers=bob.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_follow_and_unfollow_are_idempotent(app_client, api):
    alice, bob = api.user("alice"), api.user("bob")
    for _ in range(2):
        response = app_client.post("/api/users/bob/follow", headers=alice.headers)
        assert response.status_code == 200
        assert response.json()["following"] is True
    assert app_client.get("/api/users/bob").json()["followers"] == 1
    assert app_client.get("/api/users/alice").json()["following"] == 1
    for _ in range(2):
        response = app_client.delete("/api/users/bob/follow", headers=alice.headers)
        assert response.status_code == 200
        assert response.json()["following"] is False
    assert app_client.get("/api/users/bob").json()["followers"] == 0
    assert app_client.get("/api/users/alice").json()["following"] == 0
    del bob


def test_following_yourself_is_422(app_client, api):
    alice = api.user("alice")
    for method in ("POST", "DELETE"):
        response = app_client.request(method, "/api/users/alice/follow", headers=alice.headers)
        assert response.status_code == 422
        assert response.json()["error"] == "cannot_follow_self"
    assert app_client.get("/api/users/alice").json()["followers"] == 0


@pytest.mark.parametrize("method", ["POST", "DELETE"])
@pytest.mark.parametrize("name", ["nobody", "bad-name", "x" * 31])
def test_follow_unknown_user_is_404(app_client, api, method, name):
    alice = api.user("alice")
    response = app_client.request(method, f"/api/users/{name}/follow", headers=alice.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_unfollow_only_changes_your_own_follow(app_client, api):
    alice, bob, mallory = api.user("alice"), api.user("bob"), api.user("mallory")
    api.follow(alice, bob)
    app_client.delete("/api/users/bob/follow", headers=mallory.headers)
    assert app_client.get("/api/users/bob").json()["followers"] == 1
    del alice


def test_a_like_racing_the_photos_deletion_is_409_not_500(app_client, api, monkeypatch):
    """The photo passes the existence check, then is gone when the like is inserted."""
    from minigram import queries

    bob = api.user("bob")
    monkeypatch.setattr(queries, "photo_exists", lambda conn, pid: True)
    response = app_client.post("/api/photos/4242/like", headers=bob.headers)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
