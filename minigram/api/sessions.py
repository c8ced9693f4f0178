"""Sessions: log in (throttled by `minigram.login_limits`), log out, log out everywhere."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from minigram import cached, queries
from minigram.api._common import bearer_token, json_body, require_user, string_field
from minigram.api.users import PASSWORD_MAX
from minigram.auth import dummy_hash, new_token, token_digest, verify_password
from minigram.errors import ApiError
from minigram.login_limits import LoginLimiter, create_limiter
from minigram.usernames import canonical


def login_limiter(request: Request) -> LoginLimiter:
    """The app's limiter (made by the lifespan; on first use if there was none)."""
    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        limiter = state.login_limiter = create_limiter(state.settings)
    return limiter


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _check(request: Request, username: str, password: str) -> Any:
    """The user if ``password`` is theirs, else None; as slow either way."""
    ctx = cached.context(request)
    name = canonical(username)
    user = None
    if name is not None and len(password) <= PASSWORD_MAX:
        user = await ctx.read(queries.user_by_name, name)
    if user is None:
        # Same cost as a real check, so the answer time does not tell which names exist.
        rounds = ctx.settings.bcrypt_rounds
        await run_in_threadpool(
            lambda: verify_password(password[:PASSWORD_MAX], dummy_hash(rounds))
        )
        return None
    if not await run_in_threadpool(verify_password, password, user.password_hash):
        return None
    return user


async def login(request: Request) -> Response:
    ctx = cached.context(request)
    body = await json_body(request)
    username = string_field(body, "username")
    password = string_field(body, "password")
    limiter = login_limiter(request)
    # Counted before the check, so parallel attempts cannot slip past the limit.
    attempt = await limiter.reserve(username, client_ip(request))
    try:
        user = await _check(request, username, password)
    except BaseException:
        await limiter.release(attempt)  # an error says nothing about the password
        raise
    if user is None:
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    await limiter.succeeded(attempt)
    token = new_token()
    expired = queries.utcnow() - dt.timedelta(seconds=ctx.settings.token_ttl)
    await ctx.write(queries.create_token, token_digest(token), user.id, expired)
    return JSONResponse({"token": token, "user": {"id": user.id, "username": user.username}})


async def logout(request: Request) -> Response:
    ctx = cached.context(request)
    await require_user(request)
    digest = token_digest(bearer_token(request))
    await ctx.write(queries.delete_token, digest)
    await cached.tokens_revoked(ctx, [digest])
    return JSONResponse({"logged_out": True})


async def logout_all(request: Request) -> Response:
    """Revoke every token of the caller, this one included, in every worker's cache."""
    ctx = cached.context(request)
    user = await require_user(request)
    digests = await ctx.write(queries.delete_tokens_of, user.id)
    await cached.tokens_revoked(ctx, digests)
    return JSONResponse({"logged_out": True, "sessions": len(digests)})
