"""Alembic environment. The URL comes from `config.attributes["url"]` or the settings."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from storage.database.engine import make_engine
from storage.database.models import Base, UTCDateTime
from storage.settings import load_settings

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write storage's UTCDateTime as a plain timezone-aware DateTime: migrations import no app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = config.attributes.get("url") or load_settings().resolved_database_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `inpaint-admin migrate`")
main()
