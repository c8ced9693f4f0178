"""Usernames are unique case-insensitively: a unique index on lower(username).

Existing rows are made to fit first, oldest account first (by created_at, then id):

* a name that is valid after NFKC normalisation, and whose folded form no older account
  has, is kept (stored in its NFKC form);
* any other name (a case-duplicate of an older account's, or one the old pattern let
  through, like ``alice\\n``) is renamed to its valid characters, ``_`` for the others, plus
  ``_<id>`` (``Alice`` with id 17 becomes ``Alice_17``), cut to fit 30 characters, and
  ``_<id>_2``, ``_<id>_3``, ... if that is taken too.

Renamed accounts keep their id, password, tokens, photos, likes and follows; each rename is
logged as a warning. The downgrade drops the index and renames nothing back.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-03
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from alembic import op

from minigram.usernames import MAX_LENGTH, fold, is_valid, normalize

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "uq_users_username_folded"
logger = logging.getLogger("minigram.migrations")

users = sa.table("users", sa.column("id"), sa.column("username"), sa.column("created_at"))


def _free_name(name: str, user_id: int, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", normalize(name))
    for n in range(1, 1000):
        suffix = f"_{user_id}" if n == 1 else f"_{user_id}_{n}"
        candidate = base[: MAX_LENGTH - len(suffix)] + suffix
        if fold(candidate) not in taken:
            return candidate
    raise RuntimeError(f"no free username for user {user_id}")  # pragma: no cover


def renames(rows: list[tuple[int, str]]) -> dict[int, str]:
    """New names for ``rows`` of (id, username), oldest first: ``{id: new name}``."""
    taken: set[str] = set()
    changed: dict[int, str] = {}
    rest = []
    for user_id, name in rows:
        normal = normalize(name)
        if is_valid(normal) and fold(normal) not in taken:
            taken.add(fold(normal))
            if normal != name:
                changed[user_id] = normal
        else:
            rest.append((user_id, name))
    for user_id, name in rest:
        changed[user_id] = _free_name(name, user_id, taken)
        taken.add(fold(changed[user_id]))
    return changed


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(users.c.id, users.c.username).order_by(users.c.created_at, users.c.id)
    ).all()
    changed = renames([(row.id, row.username) for row in rows])
    old = {row.id: row.username for row in rows}
    # Two steps, so that no intermediate state breaks the existing unique(username).
    for user_id in changed:
        conn.execute(
            users.update().where(users.c.id == user_id).values(username=f"\x01{user_id}")
        )
    for user_id, name in changed.items():
        conn.execute(users.update().where(users.c.id == user_id).values(username=name))
        logger.warning("renamed user %d from %r to %r", user_id, old[user_id], name)
    op.create_index(INDEX, "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="users")
