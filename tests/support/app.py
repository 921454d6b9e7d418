"""The real app in this process, on a real database: FastAPI's TestClient instead of a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.keys import create_key
from storage.database.migrate import upgrade
from storage.settings import load_settings


def in_process_app(tmp_path: Path, **settings: Any) -> tuple[TestClient, dict[str, str]]:
    """The real app on a real SQLite database, with an admin and a user key."""
    app, keys = app_with_keys(tmp_path, **settings)
    return TestClient(app, raise_server_exceptions=False), keys


def app_with_keys(tmp_path: Path, **settings: Any) -> tuple[FastAPI, dict[str, str]]:
    """The ASGI app (not started) on a migrated SQLite database, with an admin and a user key.
    No worker runs beside it, so submits are queued rather than refused (api.serving) unless
    `submit_unservable` says otherwise."""
    config = load_settings(data_dir=tmp_path, **{"submit_unservable": "accept", **settings})
    upgrade(config.resolved_database_url)
    engine = make_engine(config.resolved_database_url)
    with session_scope(make_session_factory(engine)) as session:
        keys = {
            "admin": create_key(session, name="a", is_admin=True, now=utcnow()).secret,
            "user": create_key(session, name="u", is_admin=False, now=utcnow()).secret,
        }
    engine.dispose()
    return create_app(config), keys
