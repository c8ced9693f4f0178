"""Accounts: register, profiles, and deleting one's own account."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from minigram import cached, queries
from minigram.api._common import json_body, require_user, string_field, username_param
from minigram.auth import hash_password
from minigram.errors import ApiError, invalid, not_found
from minigram.responses import raw_json
from minigram.usernames import canonical

PASSWORD_MIN, PASSWORD_MAX = 8, 128


def _taken(username: str) -> ApiError:
    return ApiError(409, "username_taken", f"{username!r} is taken")


async def register(request: Request) -> Response:
    ctx = cached.context(request)
    body = await json_body(request)
    username = canonical(string_field(body, "username"))
    password = string_field(body, "password")
    if username is None:
        raise invalid("username", "must be 3-30 characters: letters, digits and underscores")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise invalid("password", f"must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    # Refuse a taken name (in any case) before paying for the hash; the unique index on the
    # folded name still decides races.
    if await ctx.read(queries.user_id_by_name, username) is not None:
        raise _taken(username)
    hashed = await run_in_threadpool(hash_password, password, ctx.settings.bcrypt_rounds)
    try:
        user_id = await ctx.write(queries.create_user, username, hashed)
    except sa_exc.IntegrityError:
        raise _taken(username) from None
    return JSONResponse({"id": user_id, "username": username}, status_code=201)


async def profile(request: Request) -> Response:
    ctx = cached.context(request)
    username = username_param(request)
    found = await cached.profile(ctx, username)
    if found is None:
        raise not_found(f"no user {username!r}")
    return raw_json(found)


def _delete(conn: Connection, username: str, caller: int) -> queries.DeletedUser:
    user_id = queries.user_id_by_name(conn, username)
    if user_id is None:
        raise not_found(f"no user {username!r}")
    if user_id != caller:
        raise ApiError(403, "forbidden", "only the account itself can delete it")
    return queries.delete_user(conn, user_id)


async def delete_user(request: Request) -> Response:
    """Delete the caller's account; every token it had stops working at once."""
    ctx = cached.context(request)
    user = await require_user(request)
    gone = await ctx.write(_delete, username_param(request), user.id)
    await cached.user_deleted(ctx, gone)
    for _, filename in gone.photos:
        await run_in_threadpool(ctx.media.delete, filename)
    return JSONResponse({"deleted": True, "id": user.id})
