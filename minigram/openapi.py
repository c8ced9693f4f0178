"""The OpenAPI 3.0 description of Minigram, generated from its routes (``GET /openapi.json``).

`build_schema` walks the app's `Route` objects and looks up each one's operation by route
name in `OPERATIONS`, so a route without a description fails loudly (`MissingOperation`)
instead of silently missing from the schema. Every operation lists its error responses, all
of them ``{"error": code, "detail": ...}``; every response documents the security headers
(`minigram.security.HEADERS`), so a schema-conformance fuzzer checks them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from minigram import __version__
from minigram.security import HEADERS

JSONSchema = dict[str, Any]

USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,30}$"
MEDIA_PATTERN = r"^[A-Za-z0-9_-]{16,64}\.(jpg|png|gif|webp)$"


class MissingOperation(LookupError):
    """A route has no entry in `OPERATIONS`."""


def _ref(name: str) -> JSONSchema:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, JSONSchema] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "A stable, machine-readable code"},
            "detail": {"description": "A human-readable reason, or {field: reason}"},
        },
    },
    "Credentials": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "pattern": USERNAME_PATTERN},
            "password": {"type": "string", "minLength": 8, "maxLength": 128},
        },
    },
    "LoginRequest": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "maxLength": 256},
            "password": {"type": "string", "maxLength": 256},
        },
    },
    "UserRef": {
        "type": "object",
        "required": ["id", "username"],
        "properties": {"id": {"type": "integer"}, "username": {"type": "string"}},
    },
    "Token": {
        "type": "object",
        "required": ["token", "user"],
        "properties": {
            "token": {"type": "string", "description": "Send as Authorization: Bearer <token>"},
            "user": _ref("UserRef"),
        },
    },
    "LoggedOut": {
        "type": "object",
        "required": ["logged_out"],
        "properties": {"logged_out": {"type": "boolean", "enum": [True]}},
    },
    "LoggedOutAll": {
        "type": "object",
        "required": ["logged_out", "sessions"],
        "properties": {
            "logged_out": {"type": "boolean", "enum": [True]},
            "sessions": {"type": "integer", "minimum": 1, "description": "Tokens revoked"},
        },
    },
    "Upload": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "A JPEG, PNG, GIF or WebP image, judged by its bytes",
            },
            # Form fields are text on the wire whatever JSON type they came from, so the
            # caption's schema constrains the text only (a string's length).
            "caption": {"description": "Text, at most 2200 characters", "maxLength": 2200},
        },
    },
    "Photo": {
        "type": "object",
        "required": [
            "id", "owner", "caption", "url", "content_type", "size", "created_at", "likes",
            "liked",
        ],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "owner": {"type": "string"},
            "caption": {"type": "string"},
            "url": {"type": "string", "pattern": r"^/media/"},
            "content_type": {
                "type": "string",
                "enum": ["image/jpeg", "image/png", "image/gif", "image/webp"],
            },
            "size": {"type": "integer", "minimum": 1},
            "created_at": {"type": "string", "format": "date-time"},
            "likes": {"type": "integer", "minimum": 0},
            "liked": {"type": "boolean"},
        },
    },
    "Deleted": {
        "type": "object",
        "required": ["deleted", "id"],
        "properties": {"deleted": {"type": "boolean"}, "id": {"type": "integer"}},
    },
    "LikeState": {
        "type": "object",
        "required": ["liked", "likes"],
        "properties": {"liked": {"type": "boolean"}, "likes": {"type": "integer", "minimum": 0}},
    },
    "FollowState": {
        "type": "object",
        "required": ["following", "username"],
        "properties": {"following": {"type": "boolean"}, "username": {"type": "string"}},
    },
    "FeedPage": {
        "type": "object",
        "required": ["photos", "next_cursor"],
        "properties": {
            "photos": {"type": "array", "items": _ref("Photo")},
            "next_cursor": {
                "type": "string",
                "nullable": True,
                "description": "Pass as ?cursor= for the next page; null on the last one",
            },
        },
    },
    "Profile": {
        "type": "object",
        "required": ["id", "username", "followers", "following", "photos"],
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "followers": {"type": "integer", "minimum": 0},
            "following": {"type": "integer", "minimum": 0},
            "photos": {"type": "integer", "minimum": 0},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "stage", "components"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
            "stage": {"type": "string", "enum": ["1", "1.5", "2"]},
            "components": {
                "type": "object",
                "required": ["db", "cache"],
                "properties": {
                    "db": {"type": "object", "required": ["status"]},
                    "cache": {"type": "object", "required": ["status"]},
                },
            },
        },
    },
}

#: Error statuses with what they mean; each becomes a reusable response.
ERRORS = {
    400: "Malformed request (invalid JSON, multipart or Content-Length)",
    401: "Missing, malformed, unknown, revoked or expired bearer token, or wrong credentials",
    403: "The resource belongs to someone else",
    404: "No such resource",
    405: "Method not allowed on this path",
    408: "The request body did not arrive in time",
    409: "Conflict (username taken, or the resource changed meanwhile)",
    413: "The body is too large",
    415: "Wrong Content-Type, or an upload that is not an accepted image",
    422: "A field is invalid; detail names it",
    429: "Too many attempts; retry after Retry-After seconds",
    431: "The request line and headers are too large",
    503: "Overloaded, or a backend is unavailable; retry after Retry-After seconds",
}
RETRY_AFTER = (429, 503)
#: Every request can be shed (503) or have too large a head (431), and every body can be too
#: large or too slow.
ALWAYS = (431, 503)
BODY = (400, 408, 413, 415, 422)


def _security_headers() -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in HEADERS}


def _error_response(status: int) -> JSONSchema:
    headers = _security_headers()
    if status in RETRY_AFTER:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    return {
        "description": ERRORS[status],
        "headers": headers,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _ok(description: str, schema: str, status: int = 200) -> dict[str, JSONSchema]:
    return {
        str(status): {
            "description": description,
            "headers": _security_headers(),
            "content": {"application/json": {"schema": _ref(schema)}},
        }
    }


def _op(
    summary: str,
    responses: dict[str, JSONSchema],
    errors: Iterable[int],
    *,
    auth: bool | None = None,
    body: JSONSchema | None = None,
    parameters: list[JSONSchema] | None = None,
    tag: str,
) -> JSONSchema:
    """One operation; ``auth`` True = bearer required, None = optional, False = no auth."""
    codes = sorted(set(errors) | set(ALWAYS) | ({401} if auth is not False else set()))
    op: JSONSchema = {
        "summary": summary,
        "tags": [tag],
        "responses": {**responses, **{str(c): {"$ref": f"#/components/responses/E{c}"}
                                      for c in codes}},
    }
    if auth:
        op["security"] = [{"bearer": []}]
    elif auth is None:
        op["security"] = [{"bearer": []}, {}]
    else:
        op["security"] = []
    if body is not None:
        op["requestBody"] = body
    if parameters:
        op["parameters"] = parameters
    return op


def _json_body(schema: str) -> JSONSchema:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


PHOTO_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}
USERNAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": USERNAME_PATTERN},
}

#: Route name -> operation. `build_schema` refuses a route missing here.
OPERATIONS: dict[str, JSONSchema] = {
    "register": _op(
        "Create an account",
        _ok("Created", "UserRef", 201),
        (*BODY, 409),
        auth=False,
        body=_json_body("Credentials"),
        tag="accounts",
    ),
    "login": _op(
        "Exchange a username and password for a bearer token",
        _ok("Logged in", "Token"),
        (*BODY, 401, 429),
        auth=False,
        body=_json_body("LoginRequest"),
        tag="accounts",
    ),
    "logout": _op(
        "Revoke the bearer token sent", _ok("Logged out", "LoggedOut"), (), auth=True,
        tag="accounts",
    ),
    "logout_all": _op(
        "Revoke every bearer token of the caller (log out all sessions)",
        _ok("Logged out everywhere", "LoggedOutAll"),
        (),
        auth=True,
        tag="accounts",
    ),
    "upload": _op(
        "Upload a photo",
        _ok("Uploaded", "Photo", 201),
        BODY,
        auth=True,
        body={
            "required": True,
            "content": {"multipart/form-data": {"schema": _ref("Upload")}},
        },
        tag="photos",
    ),
    "photo": _op(
        "A photo's metadata, with its like count and whether the caller liked it",
        _ok("The photo", "Photo"),
        (404,),
        parameters=[PHOTO_ID],
        tag="photos",
    ),
    "delete_photo": _op(
        "Delete one of your photos",
        _ok("Deleted", "Deleted"),
        (403, 404, 409),
        auth=True,
        parameters=[PHOTO_ID],
        tag="photos",
    ),
    "like": _op(
        "Like a photo (idempotent)",
        _ok("The new state", "LikeState"),
        (404, 409),
        auth=True,
        parameters=[PHOTO_ID],
        tag="social",
    ),
    "unlike": _op(
        "Take a like back (idempotent)",
        _ok("The new state", "LikeState"),
        (404, 409),
        auth=True,
        parameters=[PHOTO_ID],
        tag="social",
    ),
    "feed": _op(
        "Photos by the people you follow, newest first (keyset pagination)",
        _ok("One page", "FeedPage"),
        (422,),
        auth=True,
        parameters=[
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "maxLength": 100},
            },
        ],
        tag="photos",
    ),
    "profile": _op(
        "A user's profile with counts",
        _ok("The profile", "Profile"),
        (404,),
        auth=False,
        parameters=[USERNAME],
        tag="accounts",
    ),
    "delete_user": _op(
        "Delete your own account, with its photos, likes, follows and tokens",
        _ok("Deleted", "Deleted"),
        (403, 404),
        auth=True,
        parameters=[USERNAME],
        tag="accounts",
    ),
    "follow": _op(
        "Follow a user (idempotent)",
        _ok("The new state", "FollowState"),
        (404, 409, 422),
        auth=True,
        parameters=[USERNAME],
        tag="social",
    ),
    "unfollow": _op(
        "Stop following a user (idempotent)",
        _ok("The new state", "FollowState"),
        (404, 409, 422),
        auth=True,
        parameters=[USERNAME],
        tag="social",
    ),
    "media": _op(
        "A photo file, served with its image content type",
        {
            "200": {
                "description": "The image",
                "headers": _security_headers(),
                "content": {
                    kind: {"schema": {"type": "string", "format": "binary"}}
                    for kind in ("image/jpeg", "image/png", "image/gif", "image/webp")
                },
            }
        },
        (404,),
        auth=False,
        parameters=[
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": MEDIA_PATTERN},
            }
        ],
        tag="photos",
    ),
    "healthz": _op(
        "Database and cache health, per component",
        {
            "200": {
                "description": "Serving (the cache may be degraded)",
                "headers": _security_headers(),
                "content": {"application/json": {"schema": _ref("Health")}},
            },
            "503": {
                "description": "The database is down",
                "headers": _security_headers(),
                "content": {"application/json": {"schema": _ref("Health")}},
            },
        },
        (),
        auth=False,
        tag="operations",
    ),
    "metrics": _op(
        "Prometheus metrics",
        {
            "200": {
                "description": "Prometheus text exposition",
                "headers": _security_headers(),
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        (),
        auth=False,
        tag="operations",
    ),
    "metrics_html": _op(
        "A live metrics page",
        {
            "200": {
                "description": "HTML",
                "headers": _security_headers(),
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
        (),
        auth=False,
        tag="operations",
    ),
    "openapi": _op(
        "This schema",
        {
            "200": {
                "description": "OpenAPI 3.0",
                "headers": _security_headers(),
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
        (),
        auth=False,
        tag="operations",
    ),
}

_CONVERTER = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*):[A-Za-z]+}")


def openapi_path(path: str) -> str:
    """Starlette's ``/api/photos/{id:int}`` as OpenAPI's ``/api/photos/{id}``."""
    return _CONVERTER.sub(r"{\1}", path)


def build_schema(routes: Iterable[BaseRoute]) -> JSONSchema:
    """The OpenAPI document for ``routes`` (HEAD, which Starlette adds to GET, is left out)."""
    paths: dict[str, dict[str, JSONSchema]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        if route.name not in OPERATIONS:
            raise MissingOperation(f"route {route.name!r} ({route.path}) is not in OPERATIONS")
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            paths.setdefault(openapi_path(route.path), {})[method.lower()] = {
                "operationId": route.name,
                **OPERATIONS[route.name],
            }
    header_schemas: dict[str, JSONSchema] = {
        name: {"required": True, "schema": {"type": "string", "enum": [value]}}
        for name, value in HEADERS.items()
    }
    header_schemas["Retry-After"] = {
        "required": True,
        "description": "Seconds to wait before retrying",
        "schema": {"type": "string", "pattern": r"^[0-9]+$"},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Minigram",
            "version": __version__,
            "description": "The photo-sharing app that pytest-minigram measures. Errors are "
            'always JSON: {"error": code, "detail": ...}.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"E{status}": _error_response(status) for status in ERRORS},
            "headers": header_schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: Request) -> Response:
    schema = getattr(request.app.state, "openapi", None)
    if schema is None:
        schema = request.app.state.openapi = build_schema(request.app.routes)
    return JSONResponse(schema)
