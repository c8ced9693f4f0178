"""Every SQL statement the app runs, as plain synchronous functions of a `Connection`.

All of it is SQLAlchemy Core with bound parameters. Callers run these inside a unit of work
(`Database.read` / `Database.write`) in the threadpool.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, tuple_

from minigram.models import follows, likes, photos, tokens, users
from minigram.usernames import fold

#: Photo metadata as the API shows it, minus the per-viewer ``likes`` / ``liked``.
PhotoMeta = dict[str, Any]


def utcnow() -> dt.datetime:
    """Naive UTC, which both SQLite and PostgreSQL store and compare the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat()


# --- users and tokens ------------------------------------------------------------------


def _named(username: str) -> Any:
    """The condition "is the account ``username`` names", whatever its case (uses the unique
    index on ``lower(username)``)."""
    return func.lower(users.c.username) == fold(username)


def user_by_name(conn: Connection, username: str) -> Any:
    return conn.execute(
        select(users.c.id, users.c.username, users.c.password_hash).where(_named(username))
    ).first()


def user_id_by_name(conn: Connection, username: str) -> int | None:
    return conn.execute(select(users.c.id).where(_named(username))).scalar()


def create_user(conn: Connection, username: str, password_hash: str) -> int:
    result = conn.execute(
        users.insert().values(username=username, password_hash=password_hash, created_at=utcnow())
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def user_for_token(
    conn: Connection, digest: str, issued_after: dt.datetime
) -> tuple[int, str, dt.datetime] | None:
    """(user id, username, issued at) of a token issued after ``issued_after``, or None."""
    row = conn.execute(
        select(users.c.id, users.c.username, tokens.c.created_at)
        .join(tokens, tokens.c.user_id == users.c.id)
        .where(tokens.c.token_hash == digest, tokens.c.created_at > issued_after)
    ).first()
    return None if row is None else (row.id, row.username, row.created_at)


def create_token(
    conn: Connection, digest: str, user_id: int, expired_before: dt.datetime | None = None
) -> None:
    """Store a new token; with ``expired_before``, drop the user's tokens issued before it."""
    if expired_before is not None:
        conn.execute(
            delete(tokens).where(tokens.c.user_id == user_id, tokens.c.created_at <= expired_before)
        )
    conn.execute(tokens.insert().values(token_hash=digest, user_id=user_id, created_at=utcnow()))


def delete_token(conn: Connection, digest: str) -> None:
    conn.execute(delete(tokens).where(tokens.c.token_hash == digest))


def delete_tokens_of(conn: Connection, user_id: int) -> list[str]:
    """Revoke every token of ``user_id``; their digests, for the cache."""
    digests = list(
        conn.execute(select(tokens.c.token_hash).where(tokens.c.user_id == user_id)).scalars()
    )
    conn.execute(delete(tokens).where(tokens.c.user_id == user_id))
    return digests


def profile(conn: Connection, username: str) -> dict[str, Any] | None:
    user = conn.execute(select(users.c.id, users.c.username).where(_named(username))).first()
    if user is None:
        return None
    followers = conn.execute(
        select(func.count()).select_from(follows).where(follows.c.followee_id == user.id)
    ).scalar_one()
    following = conn.execute(
        select(func.count()).select_from(follows).where(follows.c.follower_id == user.id)
    ).scalar_one()
    count = conn.execute(
        select(func.count()).select_from(photos).where(photos.c.owner_id == user.id)
    ).scalar_one()
    return {
        "id": user.id,
        "username": user.username,
        "followers": followers,
        "following": following,
        "photos": count,
    }


@dataclass(frozen=True)
class DeletedUser:
    """What a deleted account leaves for the caches to forget."""

    username: str
    tokens: list[str]  # digests
    photos: list[tuple[int, str]]  # (id, filename) of its photos, now gone
    followers: list[int]  # whose feeds showed its photos
    related: list[str]  # followers and followees, whose profile counts change
    liked: list[int]  # others' photos whose like counts change


def delete_user(conn: Connection, user_id: int) -> DeletedUser:
    """Delete ``user_id`` with its tokens, photos, likes and follows (the rows only)."""
    username = conn.execute(select(users.c.username).where(users.c.id == user_id)).scalar_one()
    digests = delete_tokens_of(conn, user_id)
    own = conn.execute(select(photos.c.id, photos.c.filename).where(photos.c.owner_id == user_id))
    own_photos = [(row.id, row.filename) for row in own]
    followers = follower_ids(conn, user_id)
    followees = select(follows.c.followee_id).where(follows.c.follower_id == user_id)
    related = conn.execute(
        select(users.c.username).where(
            or_(users.c.id.in_(followees), users.c.id.in_(followers or [-1]))
        )
    ).scalars()
    own_ids = [photo_id for photo_id, _ in own_photos]
    liked = conn.execute(
        select(likes.c.photo_id).where(likes.c.user_id == user_id, likes.c.photo_id.not_in(own_ids))
    ).scalars()
    gone = DeletedUser(username, digests, own_photos, followers, list(related), list(liked))
    conn.execute(
        delete(likes).where(or_(likes.c.user_id == user_id, likes.c.photo_id.in_(own_ids)))
    )
    conn.execute(
        delete(follows).where(
            or_(follows.c.follower_id == user_id, follows.c.followee_id == user_id)
        )
    )
    conn.execute(delete(photos).where(photos.c.owner_id == user_id))
    conn.execute(delete(users).where(users.c.id == user_id))
    return gone


# --- photos ----------------------------------------------------------------------------

_META_COLUMNS = (
    photos.c.id,
    users.c.username,
    photos.c.caption,
    photos.c.filename,
    photos.c.content_type,
    photos.c.size,
    photos.c.created_at,
)


def _meta(row: Any) -> PhotoMeta:
    return {
        "id": row.id,
        "owner": row.username,
        "caption": row.caption,
        "url": f"/media/{row.filename}",
        "content_type": row.content_type,
        "size": row.size,
        "created_at": iso(row.created_at),
    }


def insert_photo(
    conn: Connection, owner_id: int, caption: str, filename: str, content_type: str, size: int
) -> tuple[int, dt.datetime]:
    now = utcnow()
    result = conn.execute(
        photos.insert().values(
            owner_id=owner_id,
            caption=caption,
            filename=filename,
            content_type=content_type,
            size=size,
            created_at=now,
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0]), now


def photo_metas(conn: Connection, ids: Sequence[int]) -> dict[int, PhotoMeta]:
    if not ids:
        return {}
    rows = conn.execute(
        select(*_META_COLUMNS)
        .join(users, users.c.id == photos.c.owner_id)
        .where(photos.c.id.in_(list(ids)))
    )
    return {row.id: _meta(row) for row in rows}


def photo_owner(conn: Connection, photo_id: int) -> tuple[int, str, str] | None:
    """(owner id, owner name, filename) of a photo, or None."""
    row = conn.execute(
        select(photos.c.owner_id, users.c.username, photos.c.filename)
        .join(users, users.c.id == photos.c.owner_id)
        .where(photos.c.id == photo_id)
    ).first()
    return None if row is None else (row.owner_id, row.username, row.filename)


def photo_exists(conn: Connection, photo_id: int) -> bool:
    return conn.execute(select(photos.c.id).where(photos.c.id == photo_id)).first() is not None


def delete_photo(conn: Connection, photo_id: int) -> None:
    conn.execute(delete(likes).where(likes.c.photo_id == photo_id))
    conn.execute(delete(photos).where(photos.c.id == photo_id))


Keyset = tuple[dt.datetime, int]


def encode_cursor(key: Keyset) -> str:
    """An opaque cursor for "photos older than (created_at, id)"."""
    text = f"{key[0].isoformat()}|{key[1]}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Keyset:
    """Inverse of `encode_cursor`; ValueError if ``cursor`` is not one we made."""
    if len(cursor) > 100:
        raise ValueError("cursor too long")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, photo_id = text.partition("|")
        key = (dt.datetime.fromisoformat(stamp), int(photo_id))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a feed cursor") from exc
    if key[0].tzinfo is not None or not 0 < key[1] < 2**63:
        raise ValueError("not a feed cursor")
    return key


def feed_page(
    conn: Connection, user_id: int, limit: int, after: Keyset | None
) -> tuple[list[PhotoMeta], Keyset | None]:
    """Photos by the people ``user_id`` follows, newest first, after the keyset ``after``."""
    query = (
        select(*_META_COLUMNS)
        .join(follows, follows.c.followee_id == photos.c.owner_id)
        .join(users, users.c.id == photos.c.owner_id)
        .where(follows.c.follower_id == user_id)
        .order_by(photos.c.created_at.desc(), photos.c.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(tuple_(photos.c.created_at, photos.c.id) < tuple_(*after))
    rows = conn.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_key = (rows[-1].created_at, rows[-1].id) if more else None
    return [_meta(row) for row in rows], next_key


# --- likes and follows -------------------------------------------------------------------


def like_counts(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = conn.execute(
        select(likes.c.photo_id, func.count())
        .where(likes.c.photo_id.in_(list(ids)))
        .group_by(likes.c.photo_id)
    )
    counts = {photo_id: 0 for photo_id in ids}
    counts.update({row[0]: row[1] for row in rows})
    return counts


def liked_ids(conn: Connection, user_id: int, ids: Sequence[int]) -> set[int]:
    if not ids:
        return set()
    rows = conn.execute(
        select(likes.c.photo_id).where(likes.c.user_id == user_id, likes.c.photo_id.in_(list(ids)))
    )
    return {row[0] for row in rows}


def unlike(conn: Connection, user_id: int, photo_id: int) -> None:
    conn.execute(delete(likes).where(likes.c.user_id == user_id, likes.c.photo_id == photo_id))


def follower_ids(conn: Connection, user_id: int) -> list[int]:
    rows = conn.execute(select(follows.c.follower_id).where(follows.c.followee_id == user_id))
    return [row[0] for row in rows]


def unfollow(conn: Connection, follower_id: int, followee_id: int) -> None:
    conn.execute(
        delete(follows).where(
            follows.c.follower_id == follower_id, follows.c.followee_id == followee_id
        )
    )
