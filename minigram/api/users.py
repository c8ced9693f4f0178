"""Accounts: register, log in, log out, and profiles."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from minigram import cached, queries
from minigram.api._common import (
    json_body,
    require_user,
    string_field,
    username_param,
)
from minigram.auth import (
    dummy_hash,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from minigram.errors import ApiError, invalid, not_found
from minigram.security import client_ip, login_limiter
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


async def login(request: Request) -> Response:
    ctx = cached.context(request)
    body = await json_body(request)
    username = string_field(body, "username")
    password = string_field(body, "password")
    limiter, ip = login_limiter(request), client_ip(request)
    limiter.check(username, ip)
    user = None
    name = canonical(username)
    if name is not None and len(password) <= PASSWORD_MAX:
        user = await ctx.read(queries.user_by_name, name)
    rounds = ctx.settings.bcrypt_rounds
    if user is None:
        # Same cost as a real check, so the answer time does not tell which names exist.
        await run_in_threadpool(
            lambda: verify_password(password[:PASSWORD_MAX], dummy_hash(rounds))
        )
        limiter.failed(username, ip)
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    if not await run_in_threadpool(verify_password, password, user.password_hash):
        limiter.failed(username, ip)
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    limiter.succeeded(username)
    token = new_token()
    await ctx.write(queries.create_token, token_digest(token), user.id)
    return JSONResponse({"token": token, "user": {"id": user.id, "username": user.username}})


async def logout(request: Request) -> Response:
    ctx = cached.context(request)
    await require_user(request)
    token = request.headers["authorization"].partition(" ")[2].strip()
    digest = token_digest(token)
    await ctx.write(queries.delete_token, digest)
    await cached.token_revoked(ctx, digest)
    return JSONResponse({"logged_out": True})


async def profile(request: Request) -> Response:
    ctx = cached.context(request)
    username = username_param(request)
    found = await cached.profile(ctx, username)
    if found is None:
        raise not_found(f"no user {username!r}")
    return JSONResponse(found)
