"""``GET /healthz``: the database and the cache, each with its own status.

Anyone may call it, so it names no host, port, database or driver message: why a component
is down goes to the log only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from minigram import cached

DB_TIMEOUT = 5.0
logger = logging.getLogger("minigram")


async def healthz(request: Request) -> Response:
    ctx = cached.context(request)
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
    headers = {"Retry-After": "2"} if code == 503 else None
    return JSONResponse(body, status_code=code, headers=headers)
