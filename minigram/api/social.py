"""Likes and follows. Each call is idempotent and answers with the new state."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.sql.dml import Insert
from starlette.requests import Request
from starlette.responses import Response

from minigram import cached, queries
from minigram.api._common import photo_id, require_user, username_param
from minigram.errors import ApiError, not_found
from minigram.models import follows, likes
from minigram.responses import FastJSONResponse
from minigram.usernames import fold


def _like(conn: Connection, insert: Insert, user_id: int, pid: int, on: bool) -> int:
    if not queries.photo_exists(conn, pid):
        raise not_found(f"no photo {pid}")
    if on:
        conn.execute(insert, {"user_id": user_id, "photo_id": pid, "created_at": queries.utcnow()})
    else:
        queries.unlike(conn, user_id, pid)
    return queries.like_counts(conn, [pid])[pid]


async def _set_like(request: Request, on: bool) -> Response:
    ctx = cached.context(request)
    user = await require_user(request)
    pid = photo_id(request)
    count = await ctx.write(_like, ctx.db.insert_ignore(likes), user.id, pid, on)
    await cached.likes_changed(ctx, user.id, pid)
    return FastJSONResponse({"liked": on, "likes": count})


async def like(request: Request) -> Response:
    return await _set_like(request, True)


async def unlike(request: Request) -> Response:
    return await _set_like(request, False)


def _follow(conn: Connection, insert: Insert, user_id: int, target: str, on: bool) -> None:
    target_id = queries.user_id_by_name(conn, target)
    if target_id is None:
        raise not_found(f"no user {target!r}")
    if target_id == user_id:
        raise ApiError(422, "cannot_follow_self", "you cannot follow yourself")
    if on:
        conn.execute(
            insert,
            {"follower_id": user_id, "followee_id": target_id, "created_at": queries.utcnow()},
        )
    else:
        queries.unfollow(conn, user_id, target_id)


async def _set_follow(request: Request, on: bool) -> Response:
    ctx = cached.context(request)
    user = await require_user(request)
    target = username_param(request)
    if fold(target) == fold(user.username):
        raise ApiError(422, "cannot_follow_self", "you cannot follow yourself")
    await ctx.write(_follow, ctx.db.insert_ignore(follows), user.id, target, on)
    await cached.follows_changed(ctx, user.id, user.username, target)
    return FastJSONResponse({"following": on, "username": target})


async def follow(request: Request) -> Response:
    return await _set_follow(request, True)


async def unfollow(request: Request) -> Response:
    return await _set_follow(request, False)
