"""Job records and the one place where a job's status changes.

Every change is a conditional UPDATE (`... WHERE status IN (allowed sources)`), so
two processes racing for the same job cannot both win: the loser gets False and
does nothing. Asking for an edge that the state machine does not have raises
IllegalTransition.

    QUEUED ──claim──▶ PROCESSING ──complete──▶ COMPLETED
       │                  │  │
       └──fail──▶ FAILED ◀┘  └──requeue──▶ QUEUED
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.errors import IllegalTransition
from storage.models import Job, JobStatus

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.QUEUED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_transition(src: JobStatus, dst: JobStatus) -> None:
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(f"a job cannot go from {src} to {dst}")


def _move(session: Session, job_id: str, srcs: Iterable[JobStatus], dst: JobStatus, **values: Any) -> bool:
    srcs = tuple(srcs)
    for src in srcs:
        check_transition(src, dst)
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in srcs]))
        .values(status=dst.value, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def create_job(
    session: Session,
    *,
    job_id: str,
    api_key_id: int,
    model: str,
    queue: str,
    params: dict[str, Any],
    input_keys: dict[str, str],
    base64_output: bool,
    now: datetime,
) -> Job:
    job = Job(
        id=job_id,
        api_key_id=api_key_id,
        model=model,
        queue=queue,
        status=JobStatus.QUEUED.value,
        params=params,
        input_keys=input_keys,
        base64_output=base64_output,
        created_at=now,
        progress_step=0,
        progress_total=0,
        attempts=0,
    )
    session.add(job)
    session.flush()
    return job


def claim_job(session: Session, job_id: str, *, now: datetime) -> bool:
    """QUEUED → PROCESSING. False when someone else has it, it is already over, or it does not exist."""
    return _move(
        session,
        job_id,
        [JobStatus.QUEUED],
        JobStatus.PROCESSING,
        started_at=now,
        progress_step=0,
        attempts=Job.attempts + 1,
    )


def record_progress(session: Session, job_id: str, *, step: int, total: int) -> bool:
    """Not a transition: only a PROCESSING job's progress moves."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.PROCESSING.value)
        .values(progress_step=step, progress_total=total)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete_job(
    session: Session,
    job_id: str,
    *,
    output_keys: list[str],
    output_seeds: list[int],
    inference_time: float,
    now: datetime,
    ttl: timedelta,
    nsfw: list[bool] | None = None,
) -> bool:
    """PROCESSING → COMPLETED, with its results. A job is never COMPLETED without output.

    nsfw: per output, whether the safety checker flagged (and replaced) it; None when it did not run.
    """
    if not output_keys:
        raise IllegalTransition("a job cannot complete without output")
    return _move(
        session,
        job_id,
        [JobStatus.PROCESSING],
        JobStatus.COMPLETED,
        output_keys=output_keys,
        output_seeds=output_seeds,
        nsfw=nsfw,
        inference_time=inference_time,
        finished_at=now,
        expires_at=now + ttl,
        progress_step=Job.progress_total,
    )


def fail_job(
    session: Session,
    job_id: str,
    *,
    code: str,
    message: str,
    now: datetime,
    ttl: timedelta,
    srcs: Iterable[JobStatus] = (JobStatus.QUEUED, JobStatus.PROCESSING),
) -> bool:
    """QUEUED or PROCESSING → FAILED, with a code and a message safe to show."""
    return _move(
        session,
        job_id,
        srcs,
        JobStatus.FAILED,
        error_code=code,
        error_message=message,
        finished_at=now,
        expires_at=now + ttl,
    )


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def get_visible_job(session: Session, job_id: str, *, api_key_id: int, now: datetime) -> Job | None:
    """The job if this key owns it and it has not expired; otherwise None (a 404, never a 403)."""
    job = session.get(Job, job_id)
    if job is None or job.api_key_id != api_key_id:
        return None
    if job.expired_at is not None or (job.expires_at is not None and job.expires_at <= now):
        return None
    return job


def count_jobs_ahead(session: Session, job: Job) -> int:
    """How many QUEUED jobs of the same queue were submitted before this one (0 = next)."""
    stmt = select(func.count()).where(
        Job.status == JobStatus.QUEUED.value,
        Job.queue == job.queue,
        Job.created_at < job.created_at,
    )
    return int(session.execute(stmt).scalar_one())


def list_expired(session: Session, *, now: datetime, limit: int) -> list[Job]:
    stmt = (
        select(Job)
        .where(Job.expires_at <= now, Job.expired_at.is_(None))
        .order_by(Job.expires_at)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def mark_expired(session: Session, job_id: str, *, now: datetime) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.expired_at.is_(None))
        .values(expired_at=now)
        .execution_options(synchronize_session=False)
    )
