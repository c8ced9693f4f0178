"""Small shared types."""

from __future__ import annotations

from typing import Any, NamedTuple

JSON = dict[str, Any]


class User(NamedTuple):
    """The authenticated caller."""

    id: int
    username: str
