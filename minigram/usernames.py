"""What a username is, and when two of them name the same account.

A name is NFKC-normalised first (so a fullwidth ``ａｌｉｃｅ`` or a ligature becomes its plain
letters), then must match `PATTERN` as a whole (``re.fullmatch``: ``$`` in a pattern would
also match before a trailing newline). Two names are the same account when their `fold`
is: the database has a unique index on ``lower(username)``, and every lookup by name
(login, profile, follow, delete) compares folded names, so ``Alice`` finds ``alice``.
The name is stored and shown as it was registered (after NFKC).
"""

from __future__ import annotations

import re
import unicodedata

PATTERN = re.compile(r"[A-Za-z0-9_]{3,30}")
MAX_LENGTH = 30


def normalize(name: str) -> str:
    return unicodedata.normalize("NFKC", name)


def is_valid(name: str) -> bool:
    """Whether ``name``, as given, is a valid (already normalised) username."""
    return PATTERN.fullmatch(name) is not None


def canonical(name: str) -> str | None:
    """The name to store for ``name`` as a client sent it, or None if it is not valid."""
    normal = normalize(name[: MAX_LENGTH * 4])
    return normal if is_valid(normal) else None


def fold(name: str) -> str:
    """The key two names share when they are the same account. For valid names (ASCII) this
    is exactly SQL's ``lower()``, which the unique index uses."""
    return normalize(name).lower()
