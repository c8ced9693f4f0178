"""Passwords (bcrypt) and bearer tokens (random, stored only as a SHA-256 digest)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from functools import lru_cache

import bcrypt

from minigram import timing


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes (bcrypt>=5 refuses more); passwords may be 128 characters
    # of UTF-8, so hash them to a fixed 44-byte base64 SHA-256 first.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int) -> str:
    """Hash ``password`` with bcrypt at cost ``rounds`` (timed as ``hash``)."""
    with timing.timed("hash"):
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, hashed: str) -> bool:
    """Check ``password`` against a stored hash (timed as ``hash``)."""
    with timing.timed("hash"):
        try:
            return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
        except ValueError:  # a malformed stored hash
            return False


@lru_cache(maxsize=8)
def dummy_hash(rounds: int) -> str:
    """A hash to check unknown usernames against, so that login takes as long either way."""
    return bcrypt.hashpw(b"minigram-dummy-password", bcrypt.gensalt(rounds)).decode("ascii")


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database stores for ``token``: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
