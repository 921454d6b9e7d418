"""The schema comes from Alembic alone, and it agrees with the ORM models."""

from __future__ import annotations

from storage.database.engine import make_engine
from storage.database.migrate import downgrade, schema_diff, upgrade


def test_models_and_migrations_agree(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    with engine.connect() as conn:
        diff = schema_diff(conn)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_downgrade_to_base_and_back(migrated_url: str) -> None:
    downgrade(migrated_url, "base")
    upgrade(migrated_url)
    engine = make_engine(migrated_url)
    with engine.connect() as conn:
        assert schema_diff(conn) == []
    engine.dispose()


def test_0012_numbers_existing_jobs_in_creation_order(migrated_url: str) -> None:
    """Jobs made before numeric ids get them too (on SQLite and PostgreSQL), and the next job continues after."""
    from datetime import UTC, datetime

    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from storage.database.jobs import create_job

    downgrade(migrated_url, "0011")
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            key_id = conn.execute(
                text(
                    "INSERT INTO api_keys (name, prefix, key_hash, is_admin, created_at, webhook_secret) "
                    "VALUES ('m', 'p', 'hash-0012', false, :now, 's') RETURNING id"
                ),
                {"now": datetime(2024, 1, 1, tzinfo=UTC)},
            ).scalar_one()
            for job_id, day in (("later", 3), ("earlier", 2)):
                conn.execute(
                    text(
                        "INSERT INTO jobs (id, api_key_id, model, queue, status, params, input_keys, base64_output, "
                        "created_at, progress_step, progress_total, attempts) VALUES (:id, :key, 'erase', 'inpaint', "
                        "'QUEUED', '{}', '{}', false, :at, 0, 0, 0)"
                    ),
                    {"id": job_id, "key": key_id, "at": datetime(2024, 1, day, tzinfo=UTC)},
                )
        upgrade(migrated_url)
        with Session(engine) as session:
            rows = session.execute(text("SELECT id, number FROM jobs WHERE api_key_id = :k"), {"k": key_id})
            numbers = {str(job_id): int(number) for job_id, number in rows}
            assert numbers["earlier"] < numbers["later"]
            made = create_job(
                session,
                job_id="new",
                api_key_id=key_id,
                model="erase",
                queue="inpaint",
                params={},
                input_keys={},
                base64_output=False,
                now=datetime(2024, 1, 4, tzinfo=UTC),
            )
            assert made.number > numbers["later"]
            session.rollback()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM job_numbers WHERE job_id IN ('earlier', 'later')"))
            conn.execute(text("DELETE FROM jobs WHERE api_key_id = :k"), {"k": key_id})
            conn.execute(text("DELETE FROM api_keys WHERE id = :k"), {"k": key_id})
    finally:
        engine.dispose()
