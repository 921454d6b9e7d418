"""model management: named model assets, worker heartbeats and commands, per-output nsfw flags

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_assets",
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("source", sa.Text(), nullable=False, comment="Hub id, local directory or local file."),
        sa.Column("options", sa.JSON(), nullable=False, comment="Kind-specific options (storage.assets)."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name"),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=200), nullable=False, comment="e.g. 'cuda:0 (NVIDIA H100)' or 'cpu'."),
        sa.Column("memory_total", sa.BigInteger(), nullable=True, comment="Bytes on the device."),
        sa.Column("memory_free", sa.BigInteger(), nullable=True, comment="Bytes free on the device."),
        sa.Column("resident", sa.JSON(), nullable=False, comment="Models held in memory: [{kind, source, bytes}]."),
        sa.Column("busy", sa.Boolean(), nullable=False),
        sa.Column("command_cursor", sa.Integer(), nullable=False, comment="Last worker_commands id done."),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "worker_commands",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.Text(), nullable=True, comment="A model slug (load) or a source (evict)."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "nsfw",
                sa.JSON(),
                nullable=True,
                comment="Per output: flagged by the safety checker; null when it did not run.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("nsfw")
    op.drop_table("worker_commands")
    op.drop_table("workers")
    op.drop_table("model_assets")
