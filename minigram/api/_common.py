"""Request parsing shared by the endpoints: JSON bodies, bearer tokens, path parameters."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from minigram import cached
from minigram.auth import token_digest
from minigram.errors import ApiError, invalid, not_found
from minigram.types import JSON, User
from minigram.usernames import canonical

#: The largest JSON body any endpoint reads.
JSON_LIMIT = 64 * 1024
#: Ids are 32-bit on PostgreSQL: a larger one cannot exist (and must not reach the driver).
MAX_ID = 2**31 - 1


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")


def content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "invalid Content-Length") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it is known to exceed ``limit``."""
    length = content_length(request)
    if length is not None and length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def json_body(request: Request) -> JSON:
    """The body as a JSON object: 415 for another content type, 400 if malformed (or nested
    too deeply for the parser), 422 if not an object."""
    kind = media_type(request)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    body = await read_body(request, JSON_LIMIT)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise invalid("body", "must be a JSON object")
    return data


def string_field(body: JSON, name: str) -> str:
    value: Any = body.get(name)
    if value is None:
        raise invalid(name, "is required")
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    check_text(name, value)
    return value


def check_text(name: str, value: str) -> None:
    """Refuse text no database can store: lone surrogates and NUL characters."""
    if "\x00" in value:
        raise invalid(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(name, "must be valid Unicode text") from None


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>`` (401 if the header is malformed)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        raise ApiError(
            401,
            "invalid_token",
            "expected Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return token


async def authenticate(request: Request, *, required: bool = True) -> User | None:
    """The caller named by ``Authorization: Bearer <token>`` (401 if missing, bad, revoked
    or expired)."""
    if not request.headers.get("authorization"):
        if not required:
            return None
        raise ApiError(
            401,
            "unauthorized",
            "log in and send Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )
    digest = token_digest(bearer_token(request))
    found = await cached.user_for_token(cached.context(request), digest)
    if found is None:
        raise invalid_token()
    return User(*found)


def invalid_token() -> ApiError:
    return ApiError(
        401,
        "invalid_token",
        "the token is unknown, revoked or expired",
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def require_user(request: Request) -> User:
    user = await authenticate(request, required=True)
    assert user is not None
    return user


def photo_id(request: Request) -> int:
    value = int(request.path_params["id"])
    if not 0 < value <= MAX_ID:
        raise not_found(f"no photo {value}")
    return value


def username_param(request: Request) -> str:
    """The ``{name}`` of the path, normalised (`minigram.usernames`); 404 if no user could
    have it."""
    name = str(request.path_params["name"])
    found = canonical(name)
    if found is None:
        raise not_found(f"no user {name[:64]!r}")
    return found
