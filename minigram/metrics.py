"""Prometheus metrics (``GET /metrics``) and the live page (``GET /metrics.html``).

With several workers, ``minigram serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
imports prometheus_client, and ``/metrics`` aggregates every worker's files.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from minigram.timing import Timings

REQUESTS = Counter(
    "minigram_requests_total", "HTTP requests answered", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "minigram_request_duration_seconds",
    "Time from request to response start",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMPONENT = Counter(
    "minigram_component_seconds_total",
    "Time spent in the database, the cache and password hashing",
    ["component"],
)
CACHE = Counter("minigram_cache_lookups_total", "Cache lookups by result", ["result"])
DB_QUERIES = Counter(
    "minigram_db_queries_total",
    "SQL statements sent to the database (transaction control and PRAGMAs not counted)",
    ["verb"],
)
_VERBS = frozenset({"select", "insert", "update", "delete", "with"})

# Label children looked up once (``labels()`` takes a lock and builds a key every call).
_CACHE_HIT = CACHE.labels("hit")
_CACHE_MISS = CACHE.labels("miss")
_COMPONENTS = {name: COMPONENT.labels(name) for name in ("db", "cache", "hash")}
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe(endpoint: str, method: str, status: int, seconds: float, timings: Timings) -> None:
    key = (endpoint, method, status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = _REQUEST_CHILDREN[key] = (
            REQUESTS.labels(endpoint, method, str(status)),
            LATENCY.labels(endpoint),
        )
    children[0].inc()
    children[1].observe(seconds)
    if timings.db:
        _COMPONENTS["db"].inc(timings.db)
    if timings.cache:
        _COMPONENTS["cache"].inc(timings.cache)
    if timings.hash:
        _COMPONENTS["hash"].inc(timings.hash)


def cache_lookups(hits: int, misses: int) -> None:
    if hits:
        _CACHE_HIT.inc(hits)
    if misses:
        _CACHE_MISS.inc(misses)


def db_query(statement: str) -> None:
    """Count one statement by its first word (``select``, ``insert``, ...)."""
    verb = statement.lstrip().split(None, 1)[0].lower() if statement.strip() else ""
    if verb in _VERBS:
        DB_QUERIES.labels("select" if verb == "with" else verb).inc()


def cache_error() -> None:
    CACHE.labels("error").inc()


def _exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def metrics_text(request: Request) -> Response:
    return Response(await run_in_threadpool(_exposition), media_type=CONTENT_TYPE_LATEST)


@cache
def _page() -> str:
    return (Path(__file__).parent / "static" / "metrics.html").read_text(encoding="utf-8")


async def metrics_page(request: Request) -> Response:
    return HTMLResponse(_page())
