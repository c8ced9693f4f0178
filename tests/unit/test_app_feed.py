"""The feed: followed users' photos, newest first, keyset pages, counts and liked flags."""

from __future__ import annotations

import base64

import pytest


def _ids(response):
    assert response.status_code == 200, response.text
    return [photo["id"] for photo in response.json()["photos"]]


def test_empty_feed(app_client, api):
    alice = api.user("alice")
    response = app_client.get("/api/feed", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"photos": [], "next_cursor": None}


def test_feed_shows_only_followed_users_newest_first(app_client, api):
    alice, bob, carol, dan = api.user("alice"), api.user("bob"), api.user("carol"), api.user("dan")
    api.follow(alice, bob)
    api.follow(alice, carol)
    b1 = api.photo(bob)
    c1 = api.photo(carol)
    api.photo(dan)  # not followed
    api.photo(alice)  # your own photos are not in your feed
    b2 = api.photo(bob)
    response = app_client.get("/api/feed", headers=alice.headers)
    assert _ids(response) == [b2["id"], c1["id"], b1["id"]]
    photo = response.json()["photos"][0]
    assert photo == b2
    assert response.json()["next_cursor"] is None


def test_feed_pages_with_a_keyset_cursor(app_client, api):
    alice, bob = api.user("alice"), api.user("bob")
    api.follow(alice, bob)
    made = [api.photo(bob)["id"] for _ in range(7)]
    expected = list(reversed(made))

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
        response = app_client.get("/api/feed", headers=alice.headers, params=params)
        page = _ids(response)
        assert len(page) <= 3
        seen += page
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        # a photo posted while paging does not shift the next pages (no OFFSET)
        if pages == 1:
            newest = api.photo(bob)["id"]
    assert seen == expected
    assert pages == 3
    first = _ids(app_client.get("/api/feed", headers=alice.headers, params={"limit": 3}))
    assert first[0] == newest


def test_feed_default_and_max_limit(app_client, api):
    alice, bob = api.user("alice"), api.user("bob")
    api.follow(alice, bob)
    for _ in range(21):
        api.photo(bob)
    response = app_client.get("/api/feed", headers=alice.headers)
    assert len(_ids(response)) == 20
    assert response.json()["next_cursor"] is not None
    assert len(_ids(app_client.get("/api/feed?limit=100", headers=alice.headers))) == 21


@pytest.mark.parametrize("limit", ["0", "101", "-5", "abc", "1.5", "1e3", "9" * 30])
def test_bad_limit_is_422(app_client, api, limit):
    alice = api.user("alice")
    response = app_client.get("/api/feed", headers=alice.headers, params={"limit": limit})
    assert response.status_code == 422
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%%%",
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00|abc").decode(),
        base64.urlsafe_b64encode(b"not a date|5").decode(),
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|5").decode(),
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00|99999999999999999999999").decode(),
        "A" * 500,
    ],
)
def test_bad_cursor_is_422(app_client, api, cursor):
    alice = api.user("alice")
    response = app_client.get("/api/feed", headers=alice.headers, params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_cursor"


def test_feed_carries_like_counts_and_the_callers_likes(app_client, api):
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    api.follow(alice, bob)
    api.follow(carol, bob)
    p1, p2 = api.photo(bob), api.photo(bob)
    app_client.post(f"/api/photos/{p1['id']}/like", headers=alice.headers)
    app_client.post(f"/api/photos/{p1['id']}/like", headers=carol.headers)
    app_client.post(f"/api/photos/{p2['id']}/like", headers=carol.headers)

    def state(account):
        photos = app_client.get("/api/feed", headers=account.headers).json()["photos"]
        return {p["id"]: (p["likes"], p["liked"]) for p in photos}

    assert state(alice) == {p1["id"]: (2, True), p2["id"]: (1, False)}
    assert state(carol) == {p1["id"]: (2, True), p2["id"]: (1, True)}


def test_feed_follows_unfollow_and_deletes(app_client, api):
    alice, bob = api.user("alice"), api.user("bob")
    photo = api.photo(bob)
    assert _ids(app_client.get("/api/feed", headers=alice.headers)) == []
    api.follow(alice, bob)
    assert _ids(app_client.get("/api/feed", headers=alice.headers)) == [photo["id"]]
    app_client.delete(f"/api/photos/{photo['id']}", headers=bob.headers)
    assert _ids(app_client.get("/api/feed", headers=alice.headers)) == []
    again = api.photo(bob)
    assert _ids(app_client.get("/api/feed", headers=alice.headers)) == [again["id"]]
    app_client.delete("/api/users/bob/follow", headers=alice.headers)
    assert _ids(app_client.get("/api/feed", headers=alice.headers)) == []


def test_feed_requires_login(app_client):
    response = app_client.get("/api/feed")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
