"""The tables, as SQLAlchemy Core. The Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Ids are never reused (AUTOINCREMENT on SQLite, sequences on PostgreSQL), so a cache entry
# keyed by a deleted photo's id can never describe a new photo.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(30), nullable=False, unique=True),
    Column("password_hash", String(72), nullable=False),
    Column("created_at", DateTime, nullable=False),
    sqlite_autoincrement=True,
)
# one account per name whatever its case (minigram.usernames; migration 0002)
Index("uq_users_username_folded", func.lower(users.c.username), unique=True)

tokens = Table(
    "tokens",
    metadata,
    # sha256 hex of the bearer token: the token itself is never stored
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_tokens_user_id", "user_id"),
)

photos = Table(
    "photos",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("caption", Text, nullable=False, default=""),
    Column("filename", String(80), nullable=False, unique=True),
    Column("content_type", String(20), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime, nullable=False),
    # the feed reads a followee's photos newest first: (owner, created_at, id) is its keyset
    Index("ix_photos_owner_created", "owner_id", "created_at", "id"),
    sqlite_autoincrement=True,
)

likes = Table(
    "likes",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("photo_id", Integer, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Index("ix_likes_photo_id", "photo_id"),
)

follows = Table(
    "follows",
    metadata,
    Column("follower_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("followee_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Index("ix_follows_followee_id", "followee_id"),
)
