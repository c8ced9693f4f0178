"""The read model: read-through cached lookups, and the exact invalidation each write does.

The same code runs on every stage; only the `Cache` behind it differs (none, in-process,
Redis). What is cached, and what invalidates it:

==========================  ======================================  ==========================
key                         value                                   invalidated by
==========================  ======================================  ==========================
``tok:<sha256>``            ``[user id, username, expires at]``,    logout, logout/all,
                            or ``-`` for a revoked token            account deletion
``photo:<id>``              photo metadata (immutable)              delete
``likes:<id>``              like count                              like, unlike, delete
``liked:<user>:<id>``       ``1`` / ``0``                           that user's like / unlike
``profile:<folded name>``   profile with counts                     follow, unfollow, upload,
                                                                    delete, account deletion
``feedver:<user>``          version of that user's feed             bumped by follow/unfollow
                                                                    (by the user), and by
                                                                    upload/delete (by anyone
                                                                    the user follows)
``feed:<user>:<v>:<l>:<c>`` one page of photo ids + next cursor     never: a bump orphans it
==========================  ======================================  ==========================

Feed pages are versioned, so they are never stale: a reader reads the version before it
queries, and a writer bumps it after it commits. The other entries are deleted after the
write commits, and carry short TTLs that bound the one race left (a reader that queried
before the commit and stores after the delete).

Tokens close that race instead: revoking one overwrites its entry with a tombstone (``-``) for
longer than a token entry lives, and a reader stores a token only where no value is
(``add_many``, Redis ``SET NX``), so a revoked token is refused from the moment the revoking
request answers, in every worker. A token entry also never outlives the token's lifetime.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from minigram import queries
from minigram.cache import Cache
from minigram.db import Database
from minigram.media import MediaStore
from minigram.settings import Settings
from minigram.usernames import fold

P = ParamSpec("P")
T = TypeVar("T")

TOKEN_TTL = 120
#: What a revoked token's entry holds, for longer than any reader can take to store one.
REVOKED = b"-"
REVOKED_TTL = 2 * TOKEN_TTL
PHOTO_TTL = 600
COUNT_TTL = 60
LIKED_TTL = 300
PROFILE_TTL = 60
FEED_TTL = 60


@dataclass
class Context:
    """What every endpoint needs; built by the app's lifespan, one per worker process."""

    settings: Settings
    db: Database
    cache: Cache
    media: MediaStore

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(conn, ...)`` in a read unit of work, in the threadpool."""

        def unit() -> T:
            with self.db.read() as conn:
                return fn(conn, *args, **kwargs)

        return await run_in_threadpool(unit)

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(conn, ...)`` in a write transaction, in the threadpool."""

        def unit() -> T:
            with self.db.write() as conn:
                return fn(conn, *args, **kwargs)

        return await run_in_threadpool(unit)


def context(request: Request) -> Context:
    ctx: Context = request.app.state.minigram
    return ctx


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- reads -------------------------------------------------------------------------------


async def user_for_token(ctx: Context, digest: str) -> tuple[int, str] | None:
    """The (id, username) a live token belongs to; None if unknown, revoked or expired."""
    key = f"tok:{digest}"
    (raw,) = await ctx.cache.get_many([key])
    now = time.time()
    if raw == REVOKED:
        return None
    if raw is not None:
        cached = json.loads(raw)
        if len(cached) == 3 and cached[2] > now:
            return int(cached[0]), str(cached[1])
    lifetime = ctx.settings.token_ttl
    issued_after = queries.utcnow() - dt.timedelta(seconds=lifetime)
    found = await ctx.read(queries.user_for_token, digest, issued_after)
    if found is None:
        return None
    user_id, username, issued = found
    expires = issued.replace(tzinfo=dt.UTC).timestamp() + lifetime
    ttl = min(TOKEN_TTL, expires - now)
    if ttl > 0:
        await ctx.cache.add_many({key: _dump([user_id, username, expires])}, ttl)
    return user_id, username


async def profile(ctx: Context, username: str) -> dict[str, Any] | None:
    key = f"profile:{fold(username)}"
    (raw,) = await ctx.cache.get_many([key])
    if raw is not None:
        return dict(json.loads(raw))
    found = await ctx.read(queries.profile, username)
    if found is not None:
        await ctx.cache.set_many({key: _dump(found)}, PROFILE_TTL)
    return found


def _viewer_state(
    conn: Connection, need_counts: Sequence[int], viewer: int | None, need_liked: Sequence[int]
) -> tuple[dict[int, int], set[int]]:
    counts = queries.like_counts(conn, need_counts)
    liked = queries.liked_ids(conn, viewer, need_liked) if viewer is not None else set()
    return counts, liked


async def photos_for_viewer(
    ctx: Context,
    ids: Sequence[int],
    viewer: int | None,
    known: dict[int, queries.PhotoMeta] | None = None,
) -> list[dict[str, Any]]:
    """Full photo JSON (metadata, ``likes``, ``liked``) for ``ids`` in order; gone ones skipped.

    One cache round trip for everything, then at most two DB units for what missed.
    """
    known = dict(known or {})
    meta_ids = [i for i in ids if i not in known]
    keys = [f"photo:{i}" for i in meta_ids] + [f"likes:{i}" for i in ids]
    if viewer is not None:
        keys += [f"liked:{viewer}:{i}" for i in ids]
    raw = await ctx.cache.get_many(keys)
    raw_meta = raw[: len(meta_ids)]
    raw_counts = raw[len(meta_ids) : len(meta_ids) + len(ids)]
    raw_liked = raw[len(meta_ids) + len(ids) :]

    fill: dict[str, bytes] = {}
    missing_meta = []
    for photo_id, value in zip(meta_ids, raw_meta, strict=True):
        if value is None:
            missing_meta.append(photo_id)
        else:
            known[photo_id] = json.loads(value)
    if missing_meta:
        fetched = await ctx.read(queries.photo_metas, missing_meta)
        known.update(fetched)
        fill.update({f"photo:{i}": _dump(meta) for i, meta in fetched.items()})
    await ctx.cache.set_many(fill, PHOTO_TTL)

    present = [i for i in ids if i in known]
    counts = {i: int(v) for i, v in zip(ids, raw_counts, strict=True) if v is not None}
    liked = {i: v == b"1" for i, v in zip(ids, raw_liked, strict=False) if v is not None}
    need_counts = [i for i in present if i not in counts]
    need_liked = [i for i in present if i not in liked] if viewer is not None else []
    if need_counts or need_liked:
        fresh_counts, fresh_liked = await ctx.read(_viewer_state, need_counts, viewer, need_liked)
        counts.update(fresh_counts)
        liked.update({i: i in fresh_liked for i in need_liked})
        await ctx.cache.set_many(
            {f"likes:{i}": str(fresh_counts[i]).encode() for i in need_counts}, COUNT_TTL
        )
        await ctx.cache.set_many(
            {f"liked:{viewer}:{i}": b"1" if i in fresh_liked else b"0" for i in need_liked},
            LIKED_TTL,
        )
    return [{**known[i], "likes": counts.get(i, 0), "liked": liked.get(i, False)} for i in present]


async def feed_page(
    ctx: Context,
    user_id: int,
    limit: int,
    cursor: str | None,
) -> tuple[list[int], dict[int, queries.PhotoMeta], str | None]:
    """(photo ids, metadata already fetched, next cursor) of one feed page.

    ``cursor`` must already be known to decode (`queries.decode_cursor`).
    """
    (version,) = await ctx.cache.get_many([f"feedver:{user_id}"])
    key = f"feed:{user_id}:{(version or b'0').decode()}:{limit}:{cursor or '-'}"
    (raw,) = await ctx.cache.get_many([key])
    if raw is not None:
        page = json.loads(raw)
        return [int(i) for i in page["ids"]], {}, page["next"]
    after = queries.decode_cursor(cursor) if cursor is not None else None
    metas, next_key = await ctx.read(queries.feed_page, user_id, limit, after)
    next_cursor = queries.encode_cursor(next_key) if next_key is not None else None
    ids = [meta["id"] for meta in metas]
    await ctx.cache.set_many({key: _dump({"ids": ids, "next": next_cursor})}, FEED_TTL)
    await ctx.cache.set_many({f"photo:{m['id']}": _dump(m) for m in metas}, PHOTO_TTL)
    return ids, {meta["id"]: meta for meta in metas}, next_cursor


# --- invalidation ------------------------------------------------------------------------


async def tokens_revoked(ctx: Context, digests: Sequence[str]) -> None:
    await ctx.cache.set_many({f"tok:{digest}": REVOKED for digest in digests}, REVOKED_TTL)


async def likes_changed(ctx: Context, user_id: int, photo_id: int) -> None:
    await ctx.cache.delete([f"likes:{photo_id}", f"liked:{user_id}:{photo_id}"])


async def follows_changed(ctx: Context, user_id: int, username: str, target: str) -> None:
    await ctx.cache.delete([f"profile:{fold(username)}", f"profile:{fold(target)}"])
    await ctx.cache.bump([f"feedver:{user_id}"])


async def photos_changed(
    ctx: Context, owner: str, followers: Sequence[int], photo_id: int | None = None
) -> None:
    """A photo was added (or deleted, with ``photo_id``): the owner's followers' feeds move."""
    gone = [f"photo:{photo_id}", f"likes:{photo_id}"] if photo_id is not None else []
    await ctx.cache.delete([f"profile:{fold(owner)}", *gone])
    await ctx.cache.bump([f"feedver:{f}" for f in followers])


async def user_deleted(ctx: Context, gone: queries.DeletedUser) -> None:
    """An account went, with its tokens, photos, likes and follows."""
    await tokens_revoked(ctx, gone.tokens)
    names = [gone.username, *gone.related]
    own = [photo_id for photo_id, _ in gone.photos]
    await ctx.cache.delete(
        [f"profile:{fold(name)}" for name in names]
        + [f"photo:{i}" for i in own]
        + [f"likes:{i}" for i in [*own, *gone.liked]]
    )
    await ctx.cache.bump([f"feedver:{f}" for f in gone.followers])
