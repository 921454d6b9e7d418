"""Direct access to a stack's database and settings, for assertions the HTTP API does not expose."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from storage.database.engine import make_engine, make_session_factory
from storage.database.models import Job
from storage.settings import Settings
from tests.support.stack import Stack


def stack_settings(stack: Stack) -> Settings:
    fields = {k.removeprefix("INPAINT_").lower(): v for k, v in stack.env.items() if k.startswith("INPAINT_")}
    return Settings(**fields)


@contextmanager
def stack_session(stack: Stack) -> Iterator[Session]:
    engine = make_engine(stack_settings(stack).resolved_database_url)
    session = make_session_factory(engine)()
    try:
        yield session
        session.commit()
    finally:
        session.close()
        engine.dispose()


def job_row(stack: Stack, job_id: str) -> Job:
    with stack_session(stack) as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def update_job(stack: Stack, job_id: str, **values: Any) -> None:
    with stack_session(stack) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))
