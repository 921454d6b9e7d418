"""webhooks

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_disabled_endpoints",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False, comment="sha256 hex of the URL."),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
        ),
        sa.PrimaryKeyConstraint("api_key_id", "url_hash"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column(
            "body", sa.Text(), nullable=False, comment="The exact bytes sent, so every attempt signs the same body."
        ),
        sa.Column(
            "terminal", sa.Boolean(), nullable=False, comment="Terminal events are retried; progress events never."
        ),
        sa.Column("status", sa.String(length=16), nullable=False, comment="pending, delivered, failed or disabled."),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "dispatched_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When a delivery task was last published.",
        ),
        sa.Column(
            "lease_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="A delivery attempt holds the row until then.",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_webhook_deliveries_job", ["job_id"], unique=False)

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_attempts_delivery", ["delivery_id"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "webhook_secret", sa.String(length=100), nullable=True, comment="whsec_...: signs this key's webhooks."
            )
        )
        batch_op.add_column(sa.Column("webhook_secret_previous", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "webhook_secret_previous_until",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="Until then, deliveries carry a signature with the previous secret too.",
            )
        )
    # Keys made before webhooks existed get a secret of their own (rotate it to see it).
    keys = sa.table("api_keys", sa.column("id", sa.Integer), sa.column("webhook_secret", sa.String))
    connection = op.get_bind()
    for (key_id,) in connection.execute(sa.select(keys.c.id)).all():
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        connection.execute(keys.update().where(keys.c.id == key_id).values(webhook_secret=secret))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "webhook_secret",
            existing_type=sa.String(length=100),
            nullable=False,
            existing_comment="whsec_...: signs this key's webhooks.",
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("base_url", sa.String(length=300), nullable=True, comment="Base of URLs made for this job.")
        )
        batch_op.add_column(sa.Column("webhook_url", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("track_id", sa.JSON(), nullable=True, comment="Returned as given: string or integer.")
        )
        batch_op.add_column(
            sa.Column("webhook_events", sa.JSON(), nullable=True, comment="Extra events asked for, e.g. progress.")
        )
        batch_op.add_column(
            sa.Column(
                "webhook_state",
                sa.String(length=16),
                nullable=True,
                comment="pending: the terminal event is still to be created; created: it exists.",
            )
        )
        batch_op.create_index("ix_jobs_webhook_state", ["webhook_state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_webhook_state")
        batch_op.drop_column("webhook_state")
        batch_op.drop_column("webhook_events")
        batch_op.drop_column("track_id")
        batch_op.drop_column("webhook_url")
        batch_op.drop_column("base_url")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret_previous_until")
        batch_op.drop_column("webhook_secret_previous")
        batch_op.drop_column("webhook_secret")

    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_attempts_delivery")

    op.drop_table("webhook_attempts")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_job")
        batch_op.drop_index("ix_webhook_deliveries_due")

    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_disabled_endpoints")
