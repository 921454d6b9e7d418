"""numeric job ids: each job gets an integer, the id ModelsLab and Stable Diffusion API clients see;
and the input URLs as sent, which those APIs echo in `meta`

`job_numbers` hands the integers out: inserting a row draws the next one from its integer
primary key (a sequence on PostgreSQL, AUTOINCREMENT on SQLite: never reused), on every
backend and without a hot counter row. The job keeps a copy in `jobs.number`. Existing
jobs are numbered in the order they were created.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_numbers",
        sa.Column("number", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(length=36), nullable=False, comment="The job given this number."),
        sa.UniqueConstraint("job_id", name="uq_job_numbers_job_id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "number",
                sa.Integer(),
                nullable=True,
                comment="Integer id shown on the ModelsLab and Stable Diffusion API routes (from job_numbers).",
            )
        )
    op.execute("INSERT INTO job_numbers (job_id) SELECT id FROM jobs ORDER BY created_at, id")
    op.execute("UPDATE jobs SET number = (SELECT n.number FROM job_numbers AS n WHERE n.job_id = jobs.id)")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("number", existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint("uq_jobs_number", ["number"])
        batch_op.add_column(
            sa.Column(
                "input_urls",
                sa.JSON(),
                nullable=True,
                comment="The input images' URLs as sent, by role; inline (base64) inputs are not kept.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("input_urls")
        batch_op.drop_constraint("uq_jobs_number", type_="unique")
        batch_op.drop_column("number")
    op.drop_table("job_numbers")
