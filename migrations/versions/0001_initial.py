"""jobs, api keys and the model registry

Revision ID: 0001
Revises:
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
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False, comment="First characters, to tell keys apart."),
        sa.Column("key_hash", sa.String(length=64), nullable=False, comment="sha256 hex of the key."),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "models",
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("family", sa.String(length=40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False, comment="Hub id or local directory."),
        sa.Column("options", sa.JSON(), nullable=False, comment="Limits and defaults (ModelSpec fields)."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slug"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("queue", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "params", sa.JSON(), nullable=False, comment="The resolved JobParams (storage.contract), seed drawn."
        ),
        sa.Column("input_keys", sa.JSON(), nullable=False, comment="Blob keys of the stored inputs, by role."),
        sa.Column("base64_output", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_step", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("output_keys", sa.JSON(), nullable=True, comment="Blob keys of the results, in order."),
        sa.Column("output_seeds", sa.JSON(), nullable=True),
        sa.Column("inference_time", sa.Float(), nullable=True),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_api_key_created", ["api_key_id", "created_at"], unique=False)
        batch_op.create_index("ix_jobs_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_jobs_status_queue_created", ["status", "queue", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_queue_created")
        batch_op.drop_index("ix_jobs_expires_at")
        batch_op.drop_index("ix_jobs_api_key_created")

    op.drop_table("jobs")
    op.drop_table("models")
    op.drop_table("api_keys")
