"""The initial schema: users, tokens, photos, likes, follows.

Revision ID: 0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(30), nullable=False),
        sa.Column("password_hash", sa.String(72), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_tokens_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tokens_user_id", "tokens", ["user_id"])
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("caption", sa.Text, nullable=False),
        sa.Column("filename", sa.String(80), nullable=False),
        sa.Column("content_type", sa.String(20), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_photos"),
        sa.UniqueConstraint("filename", name="uq_photos_filename"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_photos_owner_id_users", ondelete="CASCADE"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_photos_owner_created", "photos", ["owner_id", "created_at", "id"])
    op.create_table(
        "likes",
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("photo_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "photo_id", name="pk_likes"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_likes_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name="fk_likes_photo_id_photos", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_likes_photo_id", "likes", ["photo_id"])
    op.create_table(
        "follows",
        sa.Column("follower_id", sa.Integer, nullable=False),
        sa.Column("followee_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("follower_id", "followee_id", name="pk_follows"),
        sa.ForeignKeyConstraint(
            ["follower_id"], ["users.id"], name="fk_follows_follower_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["followee_id"], ["users.id"], name="fk_follows_followee_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_follows_followee_id", "follows", ["followee_id"])


def downgrade() -> None:
    op.drop_table("follows")
    op.drop_table("likes")
    op.drop_table("photos")
    op.drop_table("tokens")
    op.drop_table("users")
