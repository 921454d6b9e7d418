"""Direct access to a stack's database and settings, for assertions the HTTP API does not expose."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
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


@dataclass(frozen=True)
class Reconciliation:
    """The whole jobs table held against what clients were told (the ids their submits answered 200 with).

    stuck: rows not terminal; lost: ids a client was told that have no row; untold: rows no client was
    told of (created behind an error answer); mixed: COMPLETED rows whose images come from more than one
    attempt, or from another attempt than the one recorded (a job completed twice)."""

    jobs: int
    stuck: list[str]
    lost: list[str]
    untold: list[str]
    mixed: list[str]

    @property
    def clean(self) -> bool:
        return not (self.stuck or self.lost or self.untold or self.mixed)

    def __str__(self) -> str:
        return (
            f"{self.jobs} jobs in the database: stuck {len(self.stuck)}, lost {len(self.lost)}, "
            f"untold {len(self.untold)}, completed from more than one attempt {len(self.mixed)}"
        )


def reconcile(stack: Stack, told: Collection[str]) -> Reconciliation:
    """Reconcile every row of the stack's jobs table with `told` (see Reconciliation)."""
    with stack_session(stack) as session:
        rows = session.execute(select(Job.id, Job.status, Job.attempts, Job.output_keys)).all()
    ids = {row.id for row in rows}

    def attempts_of(keys: list[str]) -> set[str]:
        return {key.rsplit("/", 1)[1].split("-")[0] for key in keys}  # storage.blobs.store.output_key

    return Reconciliation(
        jobs=len(rows),
        stuck=[row.id for row in rows if row.status in ("QUEUED", "PROCESSING")],
        lost=[job_id for job_id in told if job_id not in ids],
        untold=[row.id for row in rows if row.id not in told],
        mixed=[
            row.id
            for row in rows
            if row.status == "COMPLETED" and attempts_of(row.output_keys or []) != {str(row.attempts)}
        ],
    )
