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
