"""Errors as JSON: ``{"error": code, "detail": ...}``.

A client's mistake is always a 4xx here, never an HTML page or a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

logger = logging.getLogger("minigram")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the client should see, with its status, code and detail."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", detail)


def invalid(field: str, reason: str) -> ApiError:
    return ApiError(422, "validation_error", {field: reason})


def error_response(
    status: int, code: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.detail, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    detail: Any = exc.detail
    if exc.status_code == 404:
        detail = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, detail, exc.headers)


def is_locked(exc: BaseException) -> bool:
    """Whether a DB error is SQLite's "database is locked" (SQLITE_BUSY / SQLITE_LOCKED)."""
    message = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in message or "database table is locked" in message


async def database_error(request: Request, exc: Exception) -> Response:
    """A lock or an unreachable database is a 503 the client may retry; anything else is a bug."""
    assert isinstance(exc, sa_exc.DBAPIError)
    if is_locked(exc):
        return error_response(
            503,
            "database_locked",
            "the database is busy with another write; retry",
            {"Retry-After": "1"},
        )
    if isinstance(exc, sa_exc.IntegrityError):
        # e.g. a like racing the deletion of its photo: the row it points at just went away
        return error_response(409, "conflict", "the resource changed meanwhile; retry")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        exc.connection_invalidated
    ):
        logger.warning("database unavailable: %s", exc.orig)
        return error_response(
            503, "database_unavailable", "the database cannot be reached", {"Retry-After": "2"}
        )
    raise exc


async def pool_timeout(request: Request, exc: Exception) -> Response:
    return error_response(
        503, "database_busy", "no database connection became free in time", {"Retry-After": "1"}
    )


EXCEPTION_HANDLERS = {
    ApiError: api_error,
    HTTPException: http_error,
    sa_exc.DBAPIError: database_error,
    sa_exc.TimeoutError: pool_timeout,
}
