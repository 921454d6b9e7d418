"""Record retention: job rows and everything that hangs off them are deleted once they are old.

A job is purged when it has ended (COMPLETED or FAILED, or expired) and ended (finished_at,
else created_at) before `now - older_than`; a QUEUED or PROCESSING job never is, whatever its
age. With it go, in this order so that no foreign key is ever violated: the attempts of its
webhook events (webhook_attempts), the events (webhook_deliveries), its idempotency keys
(idempotency_keys.result_id), its number (job_numbers), then the job. A batch goes once it is
old and none of its jobs is left; old idempotency keys (past their 24 h long before) go too, and
so do old webhook events whose job is gone (the foreign key's cascade makes them rare).

Each step deletes at most `batch` rows in a transaction of its own, so no lock is held for
long, and at most `max_batches` transactions a step per call: a large backlog drains over
several calls. In the transaction that deletes them, the purged jobs and events are added to
tallies in `counters` (storage.database.stats), so the counters of /metrics never go down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from storage.database.engine import write_scope
from storage.database.models import (
    Batch,
    IdempotencyKey,
    Job,
    JobNumber,
    JobStatus,
    WebhookAttempt,
    WebhookDelivery,
)
from storage.database.stats import RETENTION_PURGED_JOBS, RETENTION_PURGED_ROWS, add_counts, purged_tally_names
from storage.database.webhooks import PENDING

ACTIVE = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)
TERMINAL = (JobStatus.COMPLETED.value, JobStatus.FAILED.value)


@dataclass
class PurgeReport:
    """Rows deleted, by table, and the transactions that deleted jobs."""

    jobs: int = 0
    job_numbers: int = 0
    webhook_deliveries: int = 0
    webhook_attempts: int = 0
    idempotency_keys: int = 0
    batches: int = 0
    job_transactions: int = 0

    @property
    def rows(self) -> int:
        return sum(n for name, n in asdict(self).items() if name != "job_transactions")

    def counts(self) -> dict[str, int]:
        return asdict(self)


def purgeable(*, cutoff: datetime, now: datetime) -> Any:
    """Jobs that ended before `cutoff` and have no webhook attempt under way."""
    attempt_under_way = exists().where(
        WebhookDelivery.job_id == Job.id, WebhookDelivery.status == PENDING, WebhookDelivery.lease_until >= now
    )
    return and_(
        Job.status.not_in(ACTIVE),
        or_(Job.status.in_(TERMINAL), Job.expired_at.is_not(None)),
        or_(Job.finished_at < cutoff, and_(Job.finished_at.is_(None), Job.created_at < cutoff)),
        ~attempt_under_way,
    )


def purge_old_records(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    older_than: timedelta,
    batch: int = 500,
    max_batches: int = 20,
) -> PurgeReport:
    """Delete the records that ended before `now - older_than` (see the module). Returns what went."""
    if batch < 1 or max_batches < 1:
        raise ValueError("batch and max_batches must be at least 1")
    cutoff = now - older_than
    report = PurgeReport()

    def rounds(step: Callable[[Session], int]) -> int:
        done = 0
        for _ in range(max_batches):
            with write_scope(sessions) as session:
                n = step(session)
            done += 1
            if n < batch:
                break
        return done

    rounds(lambda session: _purge_idempotency_keys(session, cutoff=cutoff, limit=batch, report=report))
    report.job_transactions = rounds(
        lambda session: _purge_jobs(session, cutoff=cutoff, now=now, limit=batch, report=report)
    )
    rounds(lambda session: _purge_batches(session, cutoff=cutoff, limit=batch, report=report))
    rounds(lambda session: _purge_orphan_deliveries(session, cutoff=cutoff, limit=batch, report=report))
    return report


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _purge_idempotency_keys(session: Session, *, cutoff: datetime, limit: int, report: PurgeReport) -> int:
    """Keys older than the period: their 24 h (storage.database.idempotency.TTL) ended long ago."""
    rows = session.execute(
        select(IdempotencyKey.api_key_id, IdempotencyKey.key).where(IdempotencyKey.created_at < cutoff).limit(limit)
    ).all()
    if rows:
        key = tuple_(IdempotencyKey.api_key_id, IdempotencyKey.key)
        session.execute(delete(IdempotencyKey).where(key.in_([tuple(row) for row in rows])))
        add_counts(session, {RETENTION_PURGED_ROWS: len(rows)})
    report.idempotency_keys += len(rows)
    return len(rows)


def _delete_deliveries(session: Session, delivery_ids: Sequence[str], report: PurgeReport) -> dict[str, int]:
    """Delete events and their attempts; returns the events' tallies by status."""
    if not delivery_ids:
        return {}
    tallies = dict(
        session.execute(
            select(WebhookDelivery.status, func.count())
            .where(WebhookDelivery.id.in_(delivery_ids))
            .group_by(WebhookDelivery.status)
        ).all()
    )
    attempts = _rowcount(session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))))
    deliveries = _rowcount(session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids))))
    report.webhook_attempts += attempts
    report.webhook_deliveries += deliveries
    return {str(status): int(n) for status, n in tallies.items()}


def _purge_jobs(session: Session, *, cutoff: datetime, now: datetime, limit: int, report: PurgeReport) -> int:
    ids = list(session.execute(select(Job.id).where(purgeable(cutoff=cutoff, now=now)).limit(limit)).scalars())
    if not ids:
        return 0
    job_tallies = session.execute(
        select(Job.model, Job.status, Job.error_code, func.count())
        .where(Job.id.in_(ids))
        .group_by(Job.model, Job.status, Job.error_code)
    ).all()
    delivery_ids = list(session.execute(select(WebhookDelivery.id).where(WebhookDelivery.job_id.in_(ids))).scalars())
    before = report.rows
    delivery_tallies = _delete_deliveries(session, delivery_ids, report)
    # An idempotency key is made with its job, so before the job ended: before the cutoff too.
    report.idempotency_keys += _rowcount(
        session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff, IdempotencyKey.result_id.in_(ids))
        )
    )
    report.job_numbers += _rowcount(session.execute(delete(JobNumber).where(JobNumber.job_id.in_(ids))))
    jobs = _rowcount(session.execute(delete(Job).where(Job.id.in_(ids)).execution_options(synchronize_session=False)))
    report.jobs += jobs
    counts = purged_tally_names(
        ((model, status, code, int(n)) for model, status, code, n in job_tallies), delivery_tallies.items()
    )
    add_counts(session, {**counts, RETENTION_PURGED_JOBS: jobs, RETENTION_PURGED_ROWS: report.rows - before})
    return len(ids)


def _purge_batches(session: Session, *, cutoff: datetime, limit: int, report: PurgeReport) -> int:
    """Old batches none of whose jobs is left (and their idempotency keys)."""
    has_jobs = exists().where(Job.batch_id == Batch.id)
    ids = list(session.execute(select(Batch.id).where(Batch.created_at < cutoff, ~has_jobs).limit(limit)).scalars())
    if not ids:
        return 0
    keys = _rowcount(
        session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff, IdempotencyKey.result_id.in_(ids))
        )
    )
    batches = _rowcount(session.execute(delete(Batch).where(Batch.id.in_(ids), ~has_jobs)))
    report.idempotency_keys += keys
    report.batches += batches
    add_counts(session, {RETENTION_PURGED_ROWS: keys + batches})
    return len(ids)


def _purge_orphan_deliveries(session: Session, *, cutoff: datetime, limit: int, report: PurgeReport) -> int:
    """Old webhook events whose job is gone (only where the foreign key's cascade did not run)."""
    has_job = exists().where(Job.id == WebhookDelivery.job_id)
    ids = list(
        session.execute(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.next_attempt_at < cutoff, WebhookDelivery.created_at < cutoff, ~has_job)
            .limit(limit)
        ).scalars()
    )
    if not ids:
        return 0
    before = report.rows
    tallies = _delete_deliveries(session, ids, report)
    add_counts(session, {**purged_tally_names((), tallies.items()), RETENTION_PURGED_ROWS: report.rows - before})
    return len(ids)
