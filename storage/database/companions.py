"""Dynamic batching in the database: claiming the queued jobs that can share a leader's pipeline
call (storage.contract.batching says which can).

A worker that claimed a job (the leader) claims its companions with the same
conditional UPDATE as its own claim, all in one transaction; their own queue
messages then find them PROCESSING and do nothing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.contract.batching import batch_signature
from storage.contract.params import JobParams
from storage.database.jobs import claim_job
from storage.database.models import Job, JobStatus

SCAN_FACTOR = 4  # queued jobs looked at per companion wanted: incompatible ones are skipped


def claim_companions(
    session: Session,
    *,
    job_id: str,
    model: str,
    queue: str,
    family: str,
    signature: str,
    limit: int,
    now: datetime,
) -> list[str]:
    """Claim up to `limit` QUEUED jobs of the leader's (`job_id`) model and queue with its signature,
    oldest first. Returns their ids; each has started a new attempt, like any claim. Run it in a
    write_scope: it reads the queue, then writes."""
    if limit <= 0:
        return []
    rows = session.execute(
        select(Job.id, Job.params)
        .where(Job.status == JobStatus.QUEUED.value, Job.queue == queue, Job.model == model, Job.id != job_id)
        .order_by(Job.created_at)
        .limit(limit * SCAN_FACTOR)
    ).all()
    claimed: list[str] = []
    for candidate, raw in rows:
        try:
            params = JobParams.model_validate(raw)
        except ValidationError:
            continue  # its own run fails it with the reason
        if batch_signature(family, params) == signature and claim_job(session, candidate, now=now):
            claimed.append(candidate)
            if len(claimed) == limit:
                break
    return claimed
