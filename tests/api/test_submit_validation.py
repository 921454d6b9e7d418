"""Validation at the edge, in process: every case of the per-field table (tests/support/validation.py)
posted to the real app (FastAPI's TestClient) on its embedded default (SQLite, local images, SQLite
broker) is a 400 naming the field, the limit and the value, and nothing is queued for it.

The tiny model is registered as every stack registers it (`inpaint-admin models register`, here run
in process); its weights are never read, since no refused body gets as far as a worker. One case of
each stage over HTTP against a live stack is tests/e2e/api/test_validation.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from admin.cli import build_parser, run_command
from api.app import create_app
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.keys import create_key
from storage.database.migrate import upgrade
from storage.database.models import Job
from storage.database.registry import find_model
from storage.settings import load_settings
from tests.conftest import TINY_REGISTRATION, TINY_SLUG
from tests.support.images import job_body
from tests.support.validation import CASES, Case, bad_body, ids, registered_tiny_spec


@dataclass
class App:
    client: TestClient
    headers: dict[str, str]
    sessions: sessionmaker[Session]

    def jobs(self) -> int:
        with session_scope(self.sessions) as session:
            return int(session.execute(select(func.count()).select_from(Job)).scalar_one())


@contextmanager
def running_app(data_dir: Path) -> Iterator[App]:
    """The app on a migrated database in `data_dir`, the tiny model registered, with a user key."""
    # As the stacks run: tests submit in bursts with one key.
    settings = load_settings(data_dir=data_dir, rate_limit_per_minute=0, submit_unservable="accept")  # no worker
    upgrade(settings.resolved_database_url)
    source = str(data_dir / "tiny-sd")
    run_command(settings, build_parser().parse_args(["models", "register", TINY_SLUG, source, *TINY_REGISTRATION]))
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        assert find_model(session, TINY_SLUG) == registered_tiny_spec(source), "the contract's tests use this spec"
        key = create_key(session, name="validation", is_admin=False, now=utcnow()).secret
    try:
        with TestClient(create_app(settings)) as client:
            yield App(client=client, headers={"x-api-key": key}, sessions=sessions)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    with running_app(tmp_path_factory.mktemp("validation")) as app:
        yield app


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bad_field_is_400_naming_field_limit_and_value(app: App, case: Case) -> None:
    response = app.client.post(f"/v2/{case.model}", json=bad_body(case), headers=app.headers)
    answer = response.json()
    assert response.status_code == 400, answer
    message = answer["error"]
    assert message.startswith(case.field), message
    for word in case.words:
        assert word in message, f"{word!r} missing from {message!r}"
    assert any(e["field"] == case.field for e in answer["errors"]), answer
    assert app.jobs() == 0, "a rejected request was queued"


def test_a_valid_body_is_queued(tmp_path: Path) -> None:
    """The control, on an app of its own: the same setup takes the body every case starts from and
    queues it, leaving a row (so that the table's "nothing queued" could see a job if one were)."""
    with running_app(tmp_path) as app:
        response = app.client.post(f"/v2/{TINY_SLUG}", json=job_body(), headers=app.headers)
        assert response.status_code == 200, response.text
        assert app.jobs() == 1
