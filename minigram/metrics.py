"""Prometheus metrics (``GET /metrics``) and the live page (``GET /metrics.html``).

With several workers, ``minigram serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
imports prometheus_client, and ``/metrics`` aggregates every worker's files.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

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


def observe(endpoint: str, method: str, status: int, seconds: float, timings: Timings) -> None:
    REQUESTS.labels(endpoint, method, str(status)).inc()
    LATENCY.labels(endpoint).observe(seconds)
    for component in ("db", "cache", "hash"):
        value = getattr(timings, component)
        if value:
            COMPONENT.labels(component).inc(value)


def cache_lookups(hits: int, misses: int) -> None:
    if hits:
        CACHE.labels("hit").inc(hits)
    if misses:
        CACHE.labels("miss").inc(misses)


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
