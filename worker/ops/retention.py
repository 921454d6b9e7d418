"""Retention: a job's images live until its `expires_at`, uploaded inputs (upload_image) as long as
their link, INPAINT_UPLOAD_TTL_SECONDS, checked images (nsfw_image_check) CHECK_TTL; then the reaper
deletes them. The job's record (its row, webhook events, idempotency key, ...) lives
INPAINT_RECORD_RETENTION_DAYS after it ends; then the reaper purges it (storage.database.retention)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from storage.blobs.checks import CHECK_PREFIX, CHECK_TTL
from storage.blobs.store import BlobStore, job_prefix
from storage.blobs.uploads import UPLOAD_PREFIX
from storage.database.engine import session_scope
from storage.database.jobs import list_expired, mark_expired
from storage.database.retention import PurgeReport, purge_old_records
from storage.database.stats import REAPER_EXPIRED, add_counts

log = logging.getLogger(__name__)


def reap_expired(sessions: sessionmaker[Session], blobs: BlobStore, *, now: datetime, batch: int = 200) -> int:
    """Delete the objects of jobs past `expires_at` and mark them expired. Returns jobs reaped.

    Objects go first, then the row: a crash in between leaves the row for the
    next run, never a row marked expired whose images still exist.
    """
    with session_scope(sessions) as session:
        ids = [job.id for job in list_expired(session, now=now, limit=batch)]
    for job_id in ids:
        deleted = blobs.delete_prefix(job_prefix(job_id))
        with session_scope(sessions) as session:
            mark_expired(session, job_id, now=now)
        log.info("expired job results", extra={"request_id": job_id, "objects_deleted": deleted})
    if ids:
        with session_scope(sessions) as session:
            add_counts(session, {REAPER_EXPIRED: len(ids)})
    return len(ids)


def reap_uploads(blobs: BlobStore, *, now: datetime, ttl: timedelta) -> int:
    """Delete uploads older than their link's lifetime (no link to them is valid any more). Returns how many."""
    deleted = blobs.delete_older_than(UPLOAD_PREFIX, now - ttl)
    if deleted:
        log.info("deleted expired uploads", extra={"objects_deleted": deleted})
    return deleted


def reap_checks(blobs: BlobStore, *, now: datetime) -> int:
    """Delete checked images and their verdicts (nsfw_image_check) older than CHECK_TTL. Returns how many."""
    deleted = blobs.delete_older_than(CHECK_PREFIX, now - CHECK_TTL)
    if deleted:
        log.info("deleted old image checks", extra={"objects_deleted": deleted})
    return deleted


PURGE_BATCH = 500
"""Rows a purge transaction deletes at most: short transactions, no long locks."""


def purge_records(sessions: sessionmaker[Session], *, now: datetime, retention_days: int) -> PurgeReport:
    """Delete the records of jobs that ended over `retention_days` ago (and their dependents). Returns counts."""
    report = purge_old_records(sessions, now=now, older_than=timedelta(days=retention_days), batch=PURGE_BATCH)
    if report.rows:
        log.info("purged old records", extra=report.counts())
    return report
