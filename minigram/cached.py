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
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
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
    return orjson.dumps(value)


def render_photo(meta: bytes, likes: int, liked: bool) -> bytes:
    """A photo's JSON from its cached metadata object, with ``likes`` and ``liked`` spliced
    in as its last keys: no decode and re-encode of what the cache holds."""
    return b'%s,"likes":%d,"liked":%s}' % (meta[:-1], likes, b"true" if liked else b"false")


def render_feed(photos: Sequence[bytes], next_cursor: str | None) -> bytes:
    return b'{"photos":[%s],"next_cursor":%s}' % (b",".join(photos), _dump(next_cursor))


# --- reads -------------------------------------------------------------------------------


def _cached_token(raw: bytes | None, now: float) -> tuple[int, str] | None:
    """The (id, username) of a cached token entry, None if absent, revoked or expired."""
    if raw is None or raw == REVOKED:
        return None
    cached = orjson.loads(raw)
    if len(cached) == 3 and cached[2] > now:
        return int(cached[0]), str(cached[1])
    return None


async def _token_from_db(ctx: Context, digest: str, key: str, now: float) -> tuple[int, str] | None:
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


async def user_for_token(ctx: Context, digest: str) -> tuple[int, str] | None:
    """The (id, username) a live token belongs to; None if unknown, revoked or expired."""
    key = f"tok:{digest}"
    (raw,) = await ctx.cache.get_many([key])
    if raw == REVOKED:
        return None
    now = time.time()
    found = _cached_token(raw, now)
    if found is not None:
        return found
    return await _token_from_db(ctx, digest, key, now)


async def profile(ctx: Context, username: str) -> bytes | None:
    """The profile's JSON, as cached (or as just stored)."""
    key = f"profile:{fold(username)}"
    (raw,) = await ctx.cache.get_many([key])
    if raw is not None:
        return raw
    found = await ctx.read(queries.profile, username)
    if found is None:
        return None
    body = _dump(found)
    await ctx.cache.set_many({key: body}, PROFILE_TTL)
    return body


def _photo_state(
    conn: Connection,
    need_meta: Sequence[int],
    ids: Sequence[int],
    known: Collection[int],
    counted: Collection[int],
    viewer: int | None,
    checked: Collection[int],
) -> tuple[dict[int, queries.PhotoMeta], dict[int, int], set[int], list[int]]:
    """One unit of work for what the cache missed: metadata, then the counts and likes of the
    photos that exist. Returns (metadata, counts, liked ids, ids of the liked lookups)."""
    metas = queries.photo_metas(conn, need_meta) if need_meta else {}
    present = [i for i in ids if i in known or i in metas]
    need_counts = [i for i in present if i not in counted]
    need_liked = [i for i in present if i not in checked] if viewer is not None else []
    counts = queries.like_counts(conn, need_counts) if need_counts else {}
    liked = (
        queries.liked_ids(conn, viewer, need_liked) if need_liked and viewer is not None else set()
    )
    return metas, counts, liked, need_liked


async def _assemble(
    ctx: Context,
    ids: Sequence[int],
    viewer: int | None,
    metas: dict[int, bytes],
    raw_counts: Sequence[bytes | None],
    raw_liked: Sequence[bytes | None],
) -> list[bytes]:
    """Rendered photos for ``ids`` in order (gone ones skipped) from cached values, with one
    DB unit (and one cache write) for whatever missed."""
    counts = {i: int(v) for i, v in zip(ids, raw_counts, strict=False) if v is not None}
    liked = {i: v == b"1" for i, v in zip(ids, raw_liked, strict=False) if v is not None}
    need_meta = [i for i in ids if i not in metas]
    if need_meta or len(counts) < len(ids) or (viewer is not None and len(liked) < len(ids)):
        fresh_metas, fresh_counts, fresh_liked, looked_up = await ctx.read(
            _photo_state, need_meta, ids, metas, counts, viewer, liked
        )
        meta_fill = {}
        for i, meta in fresh_metas.items():
            metas[i] = meta_fill[f"photo:{i}"] = _dump(meta)
        counts.update(fresh_counts)
        liked.update({i: i in fresh_liked for i in looked_up})
        await ctx.cache.store(
            [
                (meta_fill, PHOTO_TTL),
                ({f"likes:{i}": b"%d" % n for i, n in fresh_counts.items()}, COUNT_TTL),
                (
                    {f"liked:{viewer}:{i}": b"1" if i in fresh_liked else b"0" for i in looked_up},
                    LIKED_TTL,
                ),
            ]
        )
    return [
        render_photo(metas[i], counts.get(i, 0), liked.get(i, False)) for i in ids if i in metas
    ]


async def photos_for_viewer(
    ctx: Context,
    ids: Sequence[int],
    viewer: int | None,
    known: dict[int, bytes] | None = None,
) -> list[bytes]:
    """Rendered photo JSON (metadata, ``likes``, ``liked``) for ``ids`` in order; gone ones
    skipped. One cache round trip for everything, then at most one DB unit for what missed."""
    metas = dict(known or {})
    meta_ids = [i for i in ids if i not in metas]
    keys = [f"photo:{i}" for i in meta_ids] + [f"likes:{i}" for i in ids]
    if viewer is not None:
        keys += [f"liked:{viewer}:{i}" for i in ids]
    raw = await ctx.cache.get_many(keys)
    for photo_id, value in zip(meta_ids, raw, strict=False):
        if value is not None:
            metas[photo_id] = value
    n = len(meta_ids)
    return await _assemble(ctx, ids, viewer, metas, raw[n : n + len(ids)], raw[n + len(ids) :])


def _feed_unit(
    conn: Connection, user_id: int, limit: int, after: queries.Keyset | None
) -> tuple[list[queries.PhotoMeta], queries.Keyset | None, dict[int, int], set[int]]:
    metas, next_key = queries.feed_page(conn, user_id, limit, after)
    ids = [meta["id"] for meta in metas]
    return metas, next_key, queries.like_counts(conn, ids), queries.liked_ids(conn, user_id, ids)


async def _feed_from_db(
    ctx: Context, user_id: int, limit: int, cursor: str | None, version: bytes
) -> bytes:
    """A feed page that missed the cache: one DB unit for the page, its counts and the
    viewer's likes; one cache write for all of it."""
    key = f"feed:{user_id}:{version.decode()}:{limit}:{cursor or '-'}"
    after = queries.decode_cursor(cursor) if cursor is not None else None
    metas, next_key, counts, liked = await ctx.read(_feed_unit, user_id, limit, after)
    next_cursor = queries.encode_cursor(next_key) if next_key is not None else None
    ids = [meta["id"] for meta in metas]
    dumped = {meta["id"]: _dump(meta) for meta in metas}
    await ctx.cache.store(
        [
            ({key: _dump({"ids": ids, "next": next_cursor})}, FEED_TTL),
            ({f"photo:{i}": body for i, body in dumped.items()}, PHOTO_TTL),
            ({f"likes:{i}": b"%d" % counts[i] for i in ids}, COUNT_TTL),
            ({f"liked:{user_id}:{i}": b"1" if i in liked else b"0" for i in ids}, LIKED_TTL),
        ]
    )
    photos = [render_photo(dumped[i], counts[i], i in liked) for i in ids]
    return render_feed(photos, next_cursor)


async def feed(ctx: Context, digest: str, limit: int, cursor: str | None) -> bytes | None:
    """The JSON of one feed page for the owner of the token ``digest``; None if the token is
    unknown, revoked or expired. ``cursor`` must already be known to decode
    (`queries.decode_cursor`).

    A cached page is one cache round trip (`Cache.feed_bundle`: the token, the feed version,
    the page and its photos); whatever missed costs one DB unit.
    """
    bundle = await ctx.cache.feed_bundle(digest, limit, cursor or "-")
    if bundle.token == REVOKED:
        return None
    now = time.time()
    user = _cached_token(bundle.token, now)
    if user is None:
        user = await _token_from_db(ctx, digest, f"tok:{digest}", now)
        if user is None:
            return None
        (version,) = await ctx.cache.get_many([f"feedver:{user[0]}"])
        return await _feed_from_db(ctx, user[0], limit, cursor, version or b"0")
    user_id = user[0]
    if bundle.page is None:
        return await _feed_from_db(ctx, user_id, limit, cursor, bundle.version or b"0")
    page = orjson.loads(bundle.page)
    ids = [int(i) for i in page["ids"]]
    photos = bundle.photos
    if len(photos) != 3 * len(ids):  # the in-process chain or the script saw another page
        rendered = await photos_for_viewer(ctx, ids, user_id)
    else:
        metas = {i: m for i, m in zip(ids, photos[0::3], strict=True) if m is not None}
        rendered = await _assemble(ctx, ids, user_id, metas, photos[1::3], photos[2::3])
    return render_feed(rendered, page["next"])


# --- invalidation ------------------------------------------------------------------------


async def tokens_revoked(ctx: Context, digests: Sequence[str]) -> None:
    await ctx.cache.set_many({f"tok:{digest}": REVOKED for digest in digests}, REVOKED_TTL)


async def likes_changed(ctx: Context, user_id: int, photo_id: int) -> None:
    await ctx.cache.delete([f"likes:{photo_id}", f"liked:{user_id}:{photo_id}"])


async def follows_changed(ctx: Context, user_id: int, username: str, target: str) -> None:
    await ctx.cache.invalidate(
        [f"profile:{fold(username)}", f"profile:{fold(target)}"], [f"feedver:{user_id}"]
    )


async def photos_changed(
    ctx: Context, owner: str, followers: Sequence[int], photo_id: int | None = None
) -> None:
    """A photo was added (or deleted, with ``photo_id``): the owner's followers' feeds move."""
    gone = [f"photo:{photo_id}", f"likes:{photo_id}"] if photo_id is not None else []
    await ctx.cache.invalidate(
        [f"profile:{fold(owner)}", *gone], [f"feedver:{f}" for f in followers]
    )


async def user_deleted(ctx: Context, gone: queries.DeletedUser) -> None:
    """An account went, with its tokens, photos, likes and follows."""
    await tokens_revoked(ctx, gone.tokens)
    names = [gone.username, *gone.related]
    own = [photo_id for photo_id, _ in gone.photos]
    await ctx.cache.invalidate(
        [f"profile:{fold(name)}" for name in names]
        + [f"photo:{i}" for i in own]
        + [f"likes:{i}" for i in [*own, *gone.liked]],
        [f"feedver:{f}" for f in gone.followers],
    )
