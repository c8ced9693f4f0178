"""Minigram's journeys, written against the engine's public API only.

Seeded users are ``seed_user_<i>`` for ``i < params["seed_users"]`` (default 100) with the
password ``seedpass123``; ``seed_user_0`` .. ``seed_user_4`` are the popular accounts.
Action names: register, login, logout, feed, like, unlike, follow, unfollow, upload, photo,
profile.

No journey sends a request that its own logic makes invalid (a follow of its own account, a
username it registered before, a login as a user whose registration failed): a 4xx in a
report is the app's. Likes and follows are
idempotent in Minigram (a second like answers 200), so no request declares ``expect=``.

Write logging: with ``params["write_log"]`` set (a file path, or a list), every write the
journeys make (register, upload, like, unlike, follow, unfollow) is logged with its outcome:
one JSON line appended per request, which ``minigram check`` compares with the database.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import time
import zlib
from typing import Any

from pytest_minigram.load.client import Response
from pytest_minigram.load.journey import Journey, VirtualUser

__all__ = ["JOURNEYS", "SEED_PASSWORD", "png_bytes"]

SEED_PASSWORD = "seedpass123"
NEW_USER_PASSWORD = "loadpass123"
POPULAR = 5
# unique per generator process, and a serial within it, so fresh usernames never collide
# across processes, runs, or users
_RUN_TAG = os.urandom(4).hex()
_SERIAL = itertools.count()


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(
        b"IEND", b"")


_PNG: bytes | None = None


def png_bytes() -> bytes:
    """A small valid PNG, made once per process."""
    global _PNG
    if _PNG is None:
        _PNG = _png(32, 32, tuple(os.urandom(3)))  # type: ignore[arg-type]
    return _PNG


def _log_write(user: VirtualUser, op: str, resp: Response | None, t0: float, *,
               who: str | None = None, **fields: Any) -> None:
    """Log one write and its outcome to ``params["write_log"]`` (a path or a list).

    ``resp`` None is a request cut short (the run ended while it was in flight): the server
    may still apply it, so it is logged with status 0, as a request without an answer.
    """
    sink = user.params.get("write_log")
    if sink is None:
        return
    record = {"op": op, "user": who or user.state.get("username"),
              "ok": resp is not None and resp.ok, "status": resp.status if resp else 0,
              "t0": t0, "t1": time.time(), **fields}
    if hasattr(sink, "append"):
        sink.append(record)
        return
    # One write() on an O_APPEND file per line: safe across the generator's processes.
    with open(sink, "ab", buffering=0) as handle:
        handle.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")


async def _logged(user: VirtualUser, op: str, method: str, path: str, *,
                  who: str | None = None, fields: dict[str, Any] | None = None,
                  **kwargs: Any) -> Response:
    """Send one write and log it (also when the run's end cancels it mid-flight)."""
    if "write_log" not in user.params:
        return await user.request(method, path, name=op, **kwargs)
    t0 = time.time()
    try:
        resp = await user.request(method, path, name=op, **kwargs)
    except BaseException:
        _log_write(user, op, None, t0, who=who, **(fields or {}))
        raise
    if op == "upload" and resp.ok:
        body = resp.json()
        fields = {"photo_id": body.get("id"),
                  "filename": str(body.get("url", "")).rpartition("/")[2] or None}
    _log_write(user, op, resp, t0, who=who, **(fields or {}))
    return resp


async def _like(user: VirtualUser, photo_id: Any, on: bool = True) -> Response:
    return await _logged(user, "like" if on else "unlike", "POST" if on else "DELETE",
                         f"/api/photos/{photo_id}/like", fields={"photo_id": photo_id})


async def _follow(user: VirtualUser, target: str, on: bool = True) -> Response:
    return await _logged(user, "follow" if on else "unfollow", "POST" if on else "DELETE",
                         f"/api/users/{target}/follow", fields={"target": target})


def _seed_users(user: VirtualUser) -> int:
    return max(1, int(user.params.get("seed_users", 100)))


def _pick_seed_user(user: VirtualUser) -> str:
    """Half the picks go to the popular accounts, as in the seeded follow graph."""
    n = _seed_users(user)
    if user.rng.random() < 0.5:
        return f"seed_user_{user.rng.randrange(min(POPULAR, n))}"
    return f"seed_user_{user.rng.randrange(n)}"


def _pick_other_seed_user(user: VirtualUser) -> str | None:
    """A seed user other than the one logged in (None if there is no other)."""
    me = user.state.get("username")
    target = _pick_seed_user(user)
    if target != me:
        return target
    n = _seed_users(user)
    if n < 2:
        return None
    return f"seed_user_{(int(target.rpartition('_')[2]) + 1) % n}"


def _fresh_username(user: VirtualUser) -> str:
    user.state["registered"] = user.state.get("registered", 0) + 1
    return f"lt{_RUN_TAG}_{next(_SERIAL):x}"


async def _login(user: VirtualUser, username: str, password: str) -> None:
    body = (await user.post("/api/login", json={"username": username, "password": password},
                            name="login")).json()
    user.headers["Authorization"] = f"Bearer {body['token']}"
    user.state["username"] = username


async def _login_seed(user: VirtualUser) -> None:
    n = _seed_users(user)
    await _login(user, f"seed_user_{user.id % n}", SEED_PASSWORD)


async def _feed(user: VirtualUser, cursor: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": 20}
    if cursor is not None:
        params["cursor"] = cursor
    data: dict[str, Any] = (await user.get("/api/feed", params=params, name="feed")).json()
    ids = [p["id"] for p in data.get("photos", [])]
    if ids:
        user.state["photo_ids"] = ids
    return data


async def _upload(user: VirtualUser) -> int | None:
    resp = await _logged(
        user, "upload", "POST", "/api/photos",
        files={"file": ("photo.png", png_bytes(), "image/png")},
        data={"caption": f"load test {user.rng.randrange(10**6)}"}, fields={"photo_id": None},
    )
    if resp.ok:
        photo_id: int | None = resp.json().get("id")
        if photo_id is not None:
            user.state.setdefault("photo_ids", []).append(photo_id)
        return photo_id
    return None


async def _a_photo(user: VirtualUser) -> Any:
    ids = user.state.get("photo_ids")
    if not ids:
        await _feed(user)
        ids = user.state.get("photo_ids")
    if not ids:
        await _upload(user)
        ids = user.state.get("photo_ids")
    return user.rng.choice(ids) if ids else None


async def _register(user: VirtualUser) -> str:
    """Register a fresh user; a failed registration ends the iteration (RequestFailed), so
    that the journey never logs in as a user that does not exist."""
    username = _fresh_username(user)
    resp = await _logged(user, "register", "POST", "/api/register", who=username,
                         json={"username": username, "password": NEW_USER_PASSWORD})
    resp.raise_for_status()
    return username


# --- composite journeys ---

async def realistic(user: VirtualUser) -> None:
    """A new user's first visit, as the seed's users did it: about ten requests."""
    user.headers.pop("Authorization", None)
    username = await _register(user)
    await _login(user, username, NEW_USER_PASSWORD)
    for target in {_pick_seed_user(user) for _ in range(2)}:
        await _follow(user, target)
    feed = await _feed(user)
    photos = feed.get("photos", [])
    for photo in user.rng.sample(photos, min(2, len(photos))):
        if not photo.get("liked"):
            await _like(user, photo["id"])
    await _upload(user)
    await _feed(user)
    await user.get(f"/api/users/{username}", name="profile")
    await user.post("/api/logout", name="logout")
    user.headers.pop("Authorization", None)


async def browse(user: VirtualUser) -> None:
    """Read-heavy: three feed pages by cursor, a profile and two photos' metadata."""
    cursor = None
    seen: list[Any] = []
    for _ in range(3):
        page = await _feed(user, cursor)
        seen += [p["id"] for p in page.get("photos", [])]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    await user.get(f"/api/users/{_pick_seed_user(user)}", name="profile")
    for photo_id in user.rng.sample(seen, min(2, len(seen))):
        await user.get(f"/api/photos/{photo_id}", name="photo")


async def write(user: VirtualUser) -> None:
    """Write-heavy: like and unlike, follow and unfollow, upload."""
    photo_id = await _a_photo(user)
    if photo_id is not None:
        await _like(user, photo_id)
        await _like(user, photo_id, on=False)
    target = _pick_other_seed_user(user)
    if target is not None:
        await _follow(user, target)
        await _follow(user, target, on=False)
    await _upload(user)


# --- one endpoint each, for isolated measurements ---

async def only_register(user: VirtualUser) -> None:
    await _register(user)


async def only_login(user: VirtualUser) -> None:
    n = _seed_users(user)
    await user.post("/api/login", json={"username": f"seed_user_{user.rng.randrange(n)}",
                                        "password": SEED_PASSWORD}, name="login")


async def only_feed(user: VirtualUser) -> None:
    await user.get("/api/feed", params={"limit": 20}, name="feed")


async def only_like(user: VirtualUser) -> None:
    photo_id = await _a_photo(user)
    if photo_id is not None:
        await _like(user, photo_id)


async def only_follow(user: VirtualUser) -> None:
    target = _pick_other_seed_user(user)
    if target is not None:
        await _follow(user, target)


async def only_upload(user: VirtualUser) -> None:
    await _upload(user)


async def only_profile(user: VirtualUser) -> None:
    await user.get(f"/api/users/{_pick_seed_user(user)}", name="profile")


JOURNEYS = [
    Journey("realistic", realistic, description="register, login, follow, feed, like, upload, "
            "feed, profile, logout"),
    Journey("browse", browse, on_start=_login_seed, description="feed pages, profiles, photos"),
    Journey("write", write, on_start=_login_seed, description="likes, follows, uploads"),
    Journey("register", only_register, description="POST /api/register"),
    Journey("login", only_login, description="POST /api/login"),
    Journey("feed", only_feed, on_start=_login_seed, description="GET /api/feed"),
    Journey("like", only_like, on_start=_login_seed, description="POST /api/photos/{id}/like"),
    Journey("follow", only_follow, on_start=_login_seed,
            description="POST /api/users/{name}/follow"),
    Journey("upload", only_upload, on_start=_login_seed, description="POST /api/photos"),
    Journey("profile", only_profile, on_start=_login_seed, description="GET /api/users/{name}"),
]
