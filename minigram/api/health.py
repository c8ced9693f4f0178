"""``GET /healthz``: the database and the cache, each with its own status."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from minigram import cached

DB_TIMEOUT = 5.0


async def healthz(request: Request) -> Response:
    ctx = cached.context(request)
    db: dict[str, Any]
    try:
        await asyncio.wait_for(run_in_threadpool(ctx.db.ping), DB_TIMEOUT)
        db = {"status": "ok", "backend": ctx.db.dialect}
    except Exception as exc:  # any failure to answer SELECT 1 means "down"
        db = {"status": "down", "backend": ctx.db.dialect, "error": f"{type(exc).__name__}: {exc}"}
    cache = await ctx.cache.health()
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
