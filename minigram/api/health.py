"""``GET /healthz``: the database and the cache, each with its own status.

Anyone may call it, so it names no host, port, database or driver message: why a component
is down goes to the log only.

The components are checked at most once per `HEALTH_TTL` seconds per worker: the answer is
reused until then (and callers that arrive while a check runs wait for that one), so a
monitor, a load balancer or a load test polling it costs no database and cache round trip per
call, and a component that goes down shows within ``HEALTH_TTL`` plus one check (a check that
hangs is bounded by `DB_TIMEOUT` and the cache's own socket timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from minigram import cached
from minigram.responses import raw_json

DB_TIMEOUT = 5.0
#: Seconds one check's answer is reused.
HEALTH_TTL = 0.5
logger = logging.getLogger("minigram")


class HealthCache:
    """The last answer of one worker's component check, and the check in flight."""

    def __init__(self, ttl: float = HEALTH_TTL) -> None:
        self.ttl = ttl
        self.answer: tuple[bytes, int] | None = None
        self.checked_at = float("-inf")
        self.running: asyncio.Future[tuple[bytes, int]] | None = None

    async def get(self, ctx: cached.Context) -> tuple[bytes, int]:
        if self.answer is not None and time.monotonic() - self.checked_at < self.ttl:
            return self.answer
        if self.running is None:
            self.running = asyncio.ensure_future(self._check(ctx))
        return await asyncio.shield(self.running)

    async def _check(self, ctx: cached.Context) -> tuple[bytes, int]:
        try:
            answer = await check(ctx)
            self.answer, self.checked_at = answer, time.monotonic()
            return answer
        finally:
            self.running = None


async def check(ctx: cached.Context) -> tuple[bytes, int]:
    """(body, status) of one check of every component."""
    db: dict[str, Any]
    try:
        await asyncio.wait_for(run_in_threadpool(ctx.db.ping), DB_TIMEOUT)
        db = {"status": "ok", "backend": ctx.db.dialect}
    except Exception as exc:  # any failure to answer SELECT 1 means "down"
        logger.warning("healthz: the database is down: %s: %s", type(exc).__name__, exc)
        db = {"status": "down", "backend": ctx.db.dialect}
    cache = await ctx.cache.health()
    if "error" in cache:
        logger.warning("healthz: the cache is %s: %s", cache["status"], cache.pop("error"))
    if db["status"] != "ok":
        status, code = "down", 503
    elif cache["status"] == "degraded":
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    body = {
        "status": status,
        "stage": ctx.settings.stage,
        "components": {"db": db, "cache": cache},
    }
    return cached._dump(body), code


def health_cache(request: Request) -> HealthCache:
    state = request.app.state
    found = getattr(state, "health_cache", None)
    if found is None:
        found = state.health_cache = HealthCache()
    assert isinstance(found, HealthCache)
    return found


async def healthz(request: Request) -> Response:
    body, code = await health_cache(request).get(cached.context(request))
    response = raw_json(body, status_code=code)
    if code == 503:
        response.headers["Retry-After"] = "2"
    return response
