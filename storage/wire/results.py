"""What a finished job produced, as clients see it: output links, metrics, timestamps.

Shared by the API's result route and the webhook payloads, so both say the same.
"""

from __future__ import annotations

import base64
from datetime import datetime

from storage.blobs.store import BlobStore
from storage.database.models import Job


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def metrics_of(job: Job) -> dict[str, float | None]:
    """inference_time: the worker's own compute; queue_time: submit until a worker claimed it."""
    queue_time = (job.started_at - job.created_at).total_seconds() if job.started_at else None
    return {"inference_time": job.inference_time, "queue_time": queue_time}


def output_links(job: Job, *, blobs: BlobStore, base_url: str, now: datetime) -> list[str]:
    """URLs of the images, valid until the job expires. Empty unless COMPLETED."""
    if not job.output_keys or job.expires_at is None:
        return []
    return [blobs.url(k, expires_at=job.expires_at, now=now, base_url=base_url) for k in job.output_keys]


def output_inline(job: Job, *, blobs: BlobStore) -> list[str]:
    return [base64.b64encode(blobs.get(k)).decode() for k in job.output_keys or []]
