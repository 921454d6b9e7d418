"""The figures behind GET /metrics, read from the database at scrape time.

The API is stateless and runs many processes, so job figures are never kept in
process memory: every scrape aggregates the rows (GROUP BY over indexed columns).
Expiry deletes a job's images and marks the row; only record retention
(storage.database.retention) deletes rows, long after, and in the same transaction
it adds each purged job and webhook event to a tally in `counters` named by its
labels (`purged_tally_names`). Rows plus tallies only grow: they are Prometheus
counters. Events that leave no row of their own (sweeper and reaper actions) are
added to the `counters` table by whoever performs them, in its own small transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.database.models import Counter, Job, JobStatus, WebhookDelivery

SWEEPER_ACTIONS = ("requeued", "republished", "timed_out", "gave_up")
"""Counter names `sweeper_<action>`: what the sweeper did to a job (see worker.ops.sweeper)."""
REAPER_EXPIRED = "reaper_expired"
RETENTION_PURGED_JOBS = "retention_purged_jobs"
"""Job rows that record retention deleted (with their dependent rows)."""
RETENTION_PURGED_ROWS = "retention_purged_rows"
"""Rows of every table that record retention deleted."""
PURGED_JOB_PREFIX = "purged_jobs|"
"""`purged_jobs|<model>|<status>|<error code or empty>`: purged jobs, still counted by /metrics."""
PURGED_DELIVERY_PREFIX = "purged_webhooks|"
"""`purged_webhooks|<delivery status>`: purged webhook events, still counted by /metrics."""


@dataclass(frozen=True)
class JobCount:
    model: str
    status: str
    error_code: str | None
    count: int


@dataclass(frozen=True)
class FinishedJob:
    """Durations of one finished job, in seconds; None where the job never started."""

    model: str
    status: str
    queue_seconds: float | None
    inference_seconds: float | None
    total_seconds: float


def add_counts(session: Session, counts: Mapping[str, int]) -> None:
    """Add to named counters, creating them at 0 first. A write only (upsert), so safe on SQLite."""
    rows = [{"name": name, "value": n} for name, n in counts.items() if n]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Counter).values(rows)
    session.execute(
        stmt.on_conflict_do_update(index_elements=["name"], set_={"value": Counter.value + stmt.excluded.value})
    )


def purged_tally_names(
    jobs: Iterable[tuple[str, str, str | None, int]], deliveries: Iterable[tuple[str, int]]
) -> dict[str, int]:
    """Counter increments that keep purged rows in the aggregates: jobs as (model, status,
    error_code, n), webhook events as (status, n)."""
    counts: dict[str, int] = defaultdict(int)
    for model, status, code, n in jobs:
        counts[f"{PURGED_JOB_PREFIX}{model}|{status}|{code or ''}"] += n
    for status, n in deliveries:
        counts[f"{PURGED_DELIVERY_PREFIX}{status}"] += n
    return dict(counts)


def purged_job_counts(counters: Mapping[str, int]) -> list[JobCount]:
    """The tallies of purged jobs among `counters` (read_counts), as count_jobs rows."""
    rows = []
    for name, n in counters.items():
        if name.startswith(PURGED_JOB_PREFIX):
            model, status, code = name.removeprefix(PURGED_JOB_PREFIX).rsplit("|", 2)
            rows.append(JobCount(model, status, code or None, n))
    return rows


def purged_delivery_counts(counters: Mapping[str, int]) -> dict[str, int]:
    """The tallies of purged webhook events among `counters` (read_counts), by delivery status."""
    return {
        name.removeprefix(PURGED_DELIVERY_PREFIX): n
        for name, n in counters.items()
        if name.startswith(PURGED_DELIVERY_PREFIX)
    }


def read_counts(session: Session) -> dict[str, int]:
    return {name: int(value) for name, value in session.execute(select(Counter.name, Counter.value))}


def count_jobs(session: Session) -> list[JobCount]:
    """Jobs by model, status and error code (ix_jobs_model_status_error covers the query)."""
    stmt = select(Job.model, Job.status, Job.error_code, func.count()).group_by(Job.model, Job.status, Job.error_code)
    return [JobCount(model, status, code, int(n)) for model, status, code, n in session.execute(stmt)]


def count_waiting(session: Session) -> dict[str, int]:
    """QUEUED jobs by queue (ix_jobs_status_queue_created)."""
    stmt = select(Job.queue, func.count()).where(Job.status == JobStatus.QUEUED.value).group_by(Job.queue)
    return {queue: int(n) for queue, n in session.execute(stmt)}


def count_deliveries(session: Session) -> dict[tuple[str, bool], int]:
    """Webhook deliveries by (status, retried: at least one attempt made)."""
    retried = case((WebhookDelivery.attempt_count > 0, True), else_=False)
    stmt = select(WebhookDelivery.status, retried, func.count()).group_by(WebhookDelivery.status, retried)
    return {(status, bool(was_retried)): int(n) for status, was_retried, n in session.execute(stmt)}


def recent_finished(session: Session, *, since: datetime, limit: int) -> list[FinishedJob]:
    """Durations of the jobs that finished since `since`, newest first, at most `limit` (ix_jobs_finished_at)."""
    stmt = (
        select(Job.model, Job.status, Job.created_at, Job.started_at, Job.finished_at, Job.inference_time)
        .where(Job.finished_at >= since)
        .order_by(Job.finished_at.desc())
        .limit(limit)
    )
    jobs = []
    for model, status, created, started, finished, inference in session.execute(stmt):
        assert finished is not None  # the WHERE above
        jobs.append(
            FinishedJob(
                model=model,
                status=status,
                queue_seconds=(started - created).total_seconds() if started else None,
                inference_seconds=inference,
                total_seconds=(finished - created).total_seconds(),
            )
        )
    return jobs
