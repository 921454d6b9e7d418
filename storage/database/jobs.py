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

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.database.keys import refund_job_credits
from storage.database.models import Job, JobNumber, JobStatus
from storage.errors import IllegalTransition

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
    base_url: str | None = None,
    webhook_url: str | None = None,
    track_id: Any = None,
    webhook_events: Sequence[str] | None = None,
    batch_id: str | None = None,
    credits_charged: int = 0,
    api_format: str | None = None,
    input_urls: dict[str, str] | None = None,
) -> Job:
    number = JobNumber(job_id=job_id)
    session.add(number)
    session.flush()
    job = Job(
        id=job_id,
        number=number.number,
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
        base_url=base_url,
        webhook_url=webhook_url,
        track_id=track_id,
        webhook_events=list(webhook_events) if webhook_events is not None else None,
        webhook_state="pending" if webhook_url else None,
        published_at=now,
        batch_id=batch_id,
        credits_charged=credits_charged,
        api_format=api_format,
        input_urls=input_urls or None,
    )
    session.add(job)
    session.flush()
    return job


def claim_job(session: Session, job_id: str, *, now: datetime) -> bool:
    """QUEUED → PROCESSING, starting a new attempt. False when someone else has it, it is already
    over, or it does not exist. The attempt number (`attempts` after the claim) is the claimer's
    token: every later write of this run is conditional on it."""
    return _move(
        session,
        job_id,
        [JobStatus.QUEUED],
        JobStatus.PROCESSING,
        started_at=now,
        heartbeat_at=now,
        progress_step=0,
        attempts=Job.attempts + 1,
    )


def _is_mine(job_id: str, attempt: int) -> Any:
    return (Job.id == job_id) & (Job.status == JobStatus.PROCESSING.value) & (Job.attempts == attempt)


def record_progress(session: Session, job_id: str, *, attempt: int, step: int, total: int) -> bool:
    """Not a transition. False when the job is no longer this attempt's: cancelled, timed out or requeued."""
    result = session.execute(
        update(Job)
        .where(_is_mine(job_id, attempt))
        .values(progress_step=step, progress_total=total)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def beat_heartbeat(session: Session, job_id: str, *, attempt: int, now: datetime) -> bool:
    """The worker running this attempt is alive. False when the job is no longer this attempt's."""
    result = session.execute(
        update(Job)
        .where(_is_mine(job_id, attempt))
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def requeue_job(session: Session, job_id: str, *, attempt: int | None, now: datetime, refund: bool = False) -> bool:
    """PROCESSING → QUEUED, to run again. `attempt` None: whichever attempt holds it (the sweeper).
    refund: the attempt does not count against the limit (a graceful shutdown)."""
    check_transition(JobStatus.PROCESSING, JobStatus.QUEUED)
    condition = (
        _is_mine(job_id, attempt)
        if attempt is not None
        else (Job.id == job_id) & (Job.status == JobStatus.PROCESSING.value)
    )
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED.value,
        "heartbeat_at": None,
        "progress_step": 0,
        "published_at": now,
    }
    if refund:
        values["attempts"] = Job.attempts - 1
    result = session.execute(update(Job).where(condition).values(**values).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_published(session: Session, job_ids: list[str], *, at: datetime | None) -> None:
    """When the job's task was last sent to the broker (None: the send failed)."""
    session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED.value)
        .values(published_at=at)
        .execution_options(synchronize_session=False)
    )


def complete_job(
    session: Session,
    job_id: str,
    *,
    attempt: int,
    output_keys: list[str],
    output_seeds: list[int],
    inference_time: float,
    now: datetime,
    ttl: timedelta,
    nsfw: list[bool] | None = None,
) -> bool:
    """PROCESSING → COMPLETED with this attempt's results, only if the job is still this attempt's:
    a job is never completed twice, and never COMPLETED without output.

    nsfw: per output, whether the safety checker flagged (and replaced) it; None when it did not run.
    """
    if not output_keys:
        raise IllegalTransition("a job cannot complete without output")
    check_transition(JobStatus.PROCESSING, JobStatus.COMPLETED)
    result = session.execute(
        update(Job)
        .where(_is_mine(job_id, attempt))
        .values(
            status=JobStatus.COMPLETED.value,
            output_keys=output_keys,
            output_seeds=output_seeds,
            nsfw=nsfw,
            inference_time=inference_time,
            finished_at=now,
            expires_at=now + ttl,
            progress_step=Job.progress_total,
            heartbeat_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def fail_job(
    session: Session,
    job_id: str,
    *,
    code: str,
    message: str,
    now: datetime,
    ttl: timedelta,
    srcs: Iterable[JobStatus] = (JobStatus.QUEUED, JobStatus.PROCESSING),
    attempt: int | None = None,
) -> bool:
    """QUEUED or PROCESSING → FAILED, with a code and a message safe to show.
    With `attempt`, only if the job is still that attempt's.

    The credits the submit took go back to the key in the same transaction: a
    job that made no images costs nothing, and the transition happens once.
    """
    if attempt is not None:
        check_transition(JobStatus.PROCESSING, JobStatus.FAILED)
        result = session.execute(
            update(Job)
            .where(_is_mine(job_id, attempt))
            .values(
                status=JobStatus.FAILED.value,
                error_code=code,
                error_message=message,
                finished_at=now,
                expires_at=now + ttl,
                heartbeat_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        failed = bool(result.rowcount)  # type: ignore[attr-defined]
    else:
        failed = _move(
            session,
            job_id,
            srcs,
            JobStatus.FAILED,
            error_code=code,
            error_message=message,
            finished_at=now,
            expires_at=now + ttl,
            heartbeat_at=None,
        )
    if failed:
        refund_job_credits(session, job_id)
    return failed


def list_jobs(
    session: Session,
    *,
    api_key_id: int,
    now: datetime,
    status: JobStatus | None,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[Job]:
    """This key's unexpired jobs, newest first, starting after the cursor `before` (created_at, id)."""
    stmt = select(Job).where(
        Job.api_key_id == api_key_id, Job.expired_at.is_(None), (Job.expires_at.is_(None)) | (Job.expires_at > now)
    )
    if status is not None:
        stmt = stmt.where(Job.status == status.value)
    if before is not None:
        created, job_id = before
        stmt = stmt.where((Job.created_at < created) | ((Job.created_at == created) & (Job.id < job_id)))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.execute(stmt).scalars())


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


def find_job_id(session: Session, number: int) -> str | None:
    """The id of the job with this integer id (`Job.number`), or None."""
    return session.execute(select(Job.id).where(Job.number == number)).scalar_one_or_none()


def count_jobs_ahead(session: Session, job: Job) -> int:
    """How many QUEUED jobs of the same queue were submitted before this one (0 = next)."""
    stmt = select(func.count()).where(
        Job.status == JobStatus.QUEUED.value,
        Job.queue == job.queue,
        Job.created_at < job.created_at,
    )
    return int(session.execute(stmt).scalar_one())


def mean_inference_time(session: Session, model: str, *, sample: int = 20, default: float = 10.0) -> float:
    """Mean inference seconds of the model's last `sample` completed jobs: a basis for ETAs."""
    recent = (
        select(Job.inference_time)
        .where(Job.model == model, Job.status == JobStatus.COMPLETED.value)
        .order_by(Job.finished_at.desc())
        .limit(sample)
        .subquery()
    )
    mean = session.execute(select(func.avg(recent.c.inference_time))).scalar_one_or_none()
    return float(mean) if mean else default


def list_expired(session: Session, *, now: datetime, limit: int) -> list[Job]:
    stmt = select(Job).where(Job.expires_at <= now, Job.expired_at.is_(None)).order_by(Job.expires_at).limit(limit)
    return list(session.execute(stmt).scalars())


def stale_processing(session: Session, *, heartbeat_before: datetime, limit: int) -> list[Job]:
    """PROCESSING jobs whose worker stopped beating."""
    stmt = select(Job).where(Job.status == JobStatus.PROCESSING.value, Job.heartbeat_at < heartbeat_before).limit(limit)
    return list(session.execute(stmt).scalars())


def overdue_processing(session: Session, *, started_before: datetime, limit: int) -> list[Job]:
    """PROCESSING jobs running longer than the time limit."""
    stmt = select(Job).where(Job.status == JobStatus.PROCESSING.value, Job.started_at < started_before).limit(limit)
    return list(session.execute(stmt).scalars())


def unpublished_queued(session: Session, *, created_before: datetime, limit: int) -> list[tuple[str, str]]:
    """(id, queue) of QUEUED jobs whose task was never sent (the publish failed)."""
    stmt = (
        select(Job.id, Job.queue)
        .where(Job.status == JobStatus.QUEUED.value, Job.published_at.is_(None), Job.created_at < created_before)
        .order_by(Job.created_at)
        .limit(limit)
    )
    return [(row.id, row.queue) for row in session.execute(stmt)]


def published_queued(session: Session, *, queue: str, published_before: datetime, limit: int) -> list[str]:
    """QUEUED jobs of a queue whose task was sent before a moment, oldest first."""
    stmt = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED.value, Job.queue == queue, Job.published_at < published_before)
        .order_by(Job.created_at)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def queues_with_waiting_jobs(session: Session) -> list[str]:
    stmt = select(Job.queue).where(Job.status == JobStatus.QUEUED.value).distinct()
    return list(session.execute(stmt).scalars())


def mark_expired(session: Session, job_id: str, *, now: datetime) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.expired_at.is_(None))
        .values(expired_at=now)
        .execution_options(synchronize_session=False)
    )


def next_queued(session: Session, *, queue: str, limit: int) -> list[tuple[str, dict[str, str]]]:
    """(id, input keys) of a queue's oldest QUEUED jobs: the ones a worker is likely to run next."""
    stmt = (
        select(Job.id, Job.input_keys)
        .where(Job.status == JobStatus.QUEUED.value, Job.queue == queue)
        .order_by(Job.created_at)
        .limit(limit)
    )
    return [(row.id, dict(row.input_keys)) for row in session.execute(stmt)]
