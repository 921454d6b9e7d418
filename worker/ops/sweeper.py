"""The sweeper: the job row is the source of truth, and this repairs what the broker lost.

Every few seconds (beat → the light ops worker) it:
- requeues PROCESSING jobs whose worker stopped beating, or fails them once they
  have used up their attempts, saying so;
- fails PROCESSING jobs past the time limit (the solo pool has no time limits of its own);
- publishes QUEUED jobs whose task was never sent (the API's publish failed, or it died);
- republishes a queue's waiting jobs when the broker holds fewer messages for it than
  there are such jobs (a broker restart lost some). A duplicate message is harmless:
  the claim is a conditional update, so the second delivery does nothing.

Each sweep adds what it did to the durable `counters` table (`sweeper_<action>`),
which GET /metrics reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from storage.database.engine import session_scope
from storage.database.jobs import (
    fail_job,
    mark_published,
    overdue_processing,
    published_queued,
    queues_with_waiting_jobs,
    requeue_job,
    stale_processing,
    unpublished_queued,
)
from storage.database.stats import SWEEPER_ACTIONS, add_counts
from storage.settings import Settings

log = logging.getLogger(__name__)

BATCH = 500
PUBLISH_GRACE = timedelta(seconds=2)
SETTLE = timedelta(seconds=10)

Publish = Callable[[str, str], None]
"""publish(job_id, queue): send the job's task; raises if the broker cannot be reached."""
QueueDepth = Callable[[str], int | None]
"""queue_depth(queue): messages waiting in the broker for that queue, or None if unknown."""


@dataclass
class SweepReport:
    timed_out: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)


def sweep(
    sessions: sessionmaker[Session], settings: Settings, *, publish: Publish, queue_depth: QueueDepth, now: datetime
) -> SweepReport:
    report = SweepReport()
    # Lost workers first: a job whose worker is dead was lost, not slow.
    recover_lost_workers(sessions, settings, publish=publish, now=now, report=report)
    fail_overdue(sessions, settings, now=now, report=report)
    publish_unsent(sessions, publish=publish, now=now, report=report)
    republish_lost_messages(sessions, publish=publish, queue_depth=queue_depth, now=now, report=report)
    if any((report.timed_out, report.gave_up, report.requeued, report.republished)):
        with session_scope(sessions) as session:
            add_counts(session, {f"sweeper_{action}": len(getattr(report, action)) for action in SWEEPER_ACTIONS})
        log.warning(
            "sweeper: %d timed out, %d given up, %d requeued, %d (re)published",
            len(report.timed_out),
            len(report.gave_up),
            len(report.requeued),
            len(report.republished),
        )
    return report


def fail_overdue(sessions: sessionmaker[Session], settings: Settings, *, now: datetime, report: SweepReport) -> None:
    limit = settings.job_time_limit_seconds
    with session_scope(sessions) as session:
        overdue = [
            (j.id, j.attempts)
            for j in overdue_processing(session, started_before=now - timedelta(seconds=limit), limit=BATCH)
        ]
    for job_id, attempt in overdue:
        with session_scope(sessions) as session:
            if fail_job(
                session,
                job_id,
                code="timeout",
                message=f"the job ran longer than its limit of {limit} s",
                now=now,
                ttl=settings.result_ttl,
                attempt=attempt,
            ):
                report.timed_out.append(job_id)


def recover_lost_workers(
    sessions: sessionmaker[Session], settings: Settings, *, publish: Publish, now: datetime, report: SweepReport
) -> None:
    before = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
    with session_scope(sessions) as session:
        stale = [(j.id, j.queue, j.attempts) for j in stale_processing(session, heartbeat_before=before, limit=BATCH)]
    for job_id, queue, attempts in stale:
        with session_scope(sessions) as session:
            if attempts >= settings.max_attempts:
                message = (
                    f"the worker running this job stopped responding {attempts} times "
                    f"(limit {settings.max_attempts}); giving up"
                )
                if fail_job(
                    session,
                    job_id,
                    code="worker_lost",
                    message=message,
                    now=now,
                    ttl=settings.result_ttl,
                    attempt=attempts,
                ):
                    report.gave_up.append(job_id)
                continue
            if not requeue_job(session, job_id, attempt=attempts, now=now):
                continue
        report.requeued.append(job_id)
        try_publish(sessions, publish, job_id, queue, now=now)


def publish_unsent(sessions: sessionmaker[Session], *, publish: Publish, now: datetime, report: SweepReport) -> None:
    with session_scope(sessions) as session:
        unsent = unpublished_queued(session, created_before=now - PUBLISH_GRACE, limit=BATCH)
    for job_id, queue in unsent:
        if try_publish(sessions, publish, job_id, queue, now=now):
            report.republished.append(job_id)


def republish_lost_messages(
    sessions: sessionmaker[Session], *, publish: Publish, queue_depth: QueueDepth, now: datetime, report: SweepReport
) -> None:
    with session_scope(sessions) as session:
        queues = queues_with_waiting_jobs(session)
    for queue in queues:
        depth = queue_depth(queue)
        if depth is None:
            continue
        with session_scope(sessions) as session:
            waiting = published_queued(session, queue=queue, published_before=now - SETTLE, limit=BATCH)
        if len(waiting) <= depth:
            continue
        log.warning("queue %s: %d jobs wait but the broker holds %d messages; republishing", queue, len(waiting), depth)
        for job_id in waiting:
            if try_publish(sessions, publish, job_id, queue, now=now):
                report.republished.append(job_id)


def try_publish(sessions: sessionmaker[Session], publish: Publish, job_id: str, queue: str, *, now: datetime) -> bool:
    try:
        publish(job_id, queue)
    except Exception as exc:  # noqa: BLE001 - the broker is down; the next sweep tries again
        log.warning("could not publish job (%s); will retry", type(exc).__name__, extra={"request_id": job_id})
        with session_scope(sessions) as session:
            mark_published(session, [job_id], at=None)
        return False
    with session_scope(sessions) as session:
        mark_published(session, [job_id], at=now)
    return True
