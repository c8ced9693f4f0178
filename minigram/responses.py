"""JSON responses on the hot paths: orjson, and bodies the read model already rendered."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response


class FastJSONResponse(JSONResponse):
    """`JSONResponse` encoded with orjson (compact UTF-8, as Starlette's own)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def raw_json(body: bytes, status_code: int = 200) -> Response:
    """A response whose body is JSON already encoded (e.g. straight from the cache)."""
    return Response(body, status_code=status_code, media_type="application/json")
