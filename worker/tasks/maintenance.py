"""Tasks of the `maintenance` queue: the reaper and the sweeper, sent by beat."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from storage.broker import TASK_REAP_EXPIRED, TASK_SWEEP, publish_job, queue_depth
from storage.database.clock import database_time
from storage.database.jobs import utcnow
from worker.app import current
from worker.ops.retention import purge_records, reap_checks, reap_expired, reap_uploads
from worker.ops.sweeper import sweep


@shared_task(name=TASK_REAP_EXPIRED, ignore_result=True)
def reap() -> int:
    ops = current().ops
    now = utcnow()
    reap_uploads(ops.blobs, now=now, ttl=timedelta(seconds=ops.settings.upload_ttl_seconds))
    reap_checks(ops.blobs, now=now)
    reaped = reap_expired(ops.sessions, ops.blobs, now=now)
    purge_records(ops.sessions, now=now, retention_days=ops.settings.record_retention_days)
    return reaped


@shared_task(name=TASK_SWEEP, ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    process = current()
    report = sweep(
        process.ops.sessions,
        process.settings,
        now=database_time(process.ops.sessions),
        publish=lambda job_id, queue: publish_job(process.celery, job_id, queue=queue),
        queue_depth=lambda queue: queue_depth(process.celery, queue),
    )
    return {name: len(ids) for name, ids in vars(report).items()}
