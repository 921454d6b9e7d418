"""Dynamic batching: which queued jobs can share one pipeline call, and claiming them.

Two jobs can run as one diffusers call when everything but their prompts, seeds and
inputs is the same: model and base weights, size, steps, scheduler and its options,
guidance, strength, adapters (VAE, LoRAs, embeddings, clip_skip). Each must ask for
one image: a job with `samples` n shares one VAE encoding of its input among its n
images, which a batch of separate inputs cannot reproduce, so such a job runs alone
and keeps exactly the images it would have had. So does a ControlNet job (its
control image is per job) and `erase` (no pipeline). Mask handling, the safety
check and storage stay per job, so they may differ.

A worker that claimed a job (the leader) claims its companions with the same
conditional UPDATE as its own claim, all in one transaction; their own queue
messages then find them PROCESSING and do nothing.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.contract import JobParams
from storage.jobs import claim_job
from storage.models import Job, JobStatus

BATCHED_FAMILIES = ("sd15", "sdxl")
PER_JOB_FIELDS = {"prompt", "negative_prompt", "seed", "mask", "safety", "enhance_prompt", "ignored"}
SCAN_FACTOR = 4  # queued jobs looked at per companion wanted: incompatible ones are skipped


def batch_signature(family: str, params: JobParams) -> str | None:
    """Jobs with equal signatures can share a pipeline call; None: this job always runs alone."""
    if family not in BATCHED_FAMILIES or params.samples != 1 or params.control is not None:
        return None
    shared = params.model_dump(mode="json", exclude=PER_JOB_FIELDS)
    # SDXL encodes a missing negative prompt as zeros and an empty one as "": not interchangeable.
    shared["negative_prompt_given"] = params.negative_prompt is not None
    return json.dumps(shared, sort_keys=True)


def claim_companions(
    session: Session, *, job_id: str, model: str, queue: str, family: str, signature: str, limit: int,
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
