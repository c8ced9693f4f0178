"""The feed: photos by the people you follow, newest first, keyset-paginated."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from minigram import cached, queries
from minigram.api._common import MAX_ID, bearer_token, invalid_token, require_user
from minigram.auth import token_digest
from minigram.errors import ApiError, invalid
from minigram.responses import raw_json

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
PARAMS = frozenset({"limit", "cursor"})


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # ASCII digits only: int() would also take " 5", "+5", "0_5" and other scripts' digits
    if not raw.isascii() or not raw.isdigit() or len(raw) > 3:
        raise invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    limit = int(raw)
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return limit


def _page_params(request: Request) -> tuple[int, str | None]:
    """(limit, cursor) of the query string; ApiError (422) if they are not valid."""
    unknown = sorted(set(request.query_params) - PARAMS)
    if unknown:  # a typo such as ?limt=5 must not silently give the default page
        raise invalid(unknown[0][:50], "unknown query parameter; use limit and cursor")
    for name in PARAMS:
        if len(request.query_params.getlist(name)) > 1:
            raise invalid(name, "must be given at most once")
    limit = _limit(request)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None:
        try:
            _, after_id = queries.decode_cursor(cursor)
            if after_id > MAX_ID:  # no such photo id; PostgreSQL's integer would overflow
                raise ValueError(cursor)
        except ValueError:
            raise ApiError(422, "invalid_cursor", "use next_cursor from a feed page") from None
    return limit, cursor


async def feed(request: Request) -> Response:
    """One page; the token, the page and its photos come from one cache lookup when cached.

    The caller is authenticated before the query is judged: 401 comes before 422.
    """
    ctx = cached.context(request)
    if not request.headers.get("authorization"):
        await require_user(request)  # raises 401
    digest = token_digest(bearer_token(request))
    try:
        limit, cursor = _page_params(request)
    except ApiError:
        await require_user(request)
        raise
    body = await cached.feed(ctx, digest, limit, cursor)
    if body is None:
        raise invalid_token()
    return raw_json(body)
