"""The feed: photos by the people you follow, newest first, keyset-paginated."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from minigram import cached, queries
from minigram.api._common import MAX_ID, require_user
from minigram.errors import ApiError, invalid

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


async def feed(request: Request) -> Response:
    ctx = cached.context(request)
    user = await require_user(request)
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
    ids, known, next_cursor = await cached.feed_page(ctx, user.id, limit, cursor)
    photos = await cached.photos_for_viewer(ctx, ids, user.id, known)
    return JSONResponse({"photos": photos, "next_cursor": next_cursor})
