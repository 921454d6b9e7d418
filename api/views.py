"""Response bodies of a job, built from its row. Shared by every route that shows a job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from storage.blobs.store import BlobStore
from storage.database.jobs import count_jobs_ahead
from storage.database.models import Job, JobStatus
from storage.wire import modelslab
from storage.wire.results import iso, metrics_of, output_inline, output_links


def job_urls(base_url: str, job_id: str) -> dict[str, str]:
    return {
        "status_url": f"{base_url}/v2/requests/{job_id}/status",
        "response_url": f"{base_url}/v2/requests/{job_id}",
    }


def progress_of(job: Job) -> dict[str, Any]:
    total = max(job.progress_total, 0)
    step = min(job.progress_step, total) if total else 0
    return {"step": step, "total": total, "percent": round(100.0 * step / total, 1) if total else 0.0}


def status_body(
    session: Session | None, job: Job, *, base_url: str, queue_position: int | None = None
) -> dict[str, Any]:
    """GET /v2/requests/{id}/status. QUEUED adds queue_position (counted with `session` unless
    given), PROCESSING adds progress."""
    body: dict[str, Any] = {
        "request_id": job.id,
        "status": job.status,
        "model": job.model,
        "created_at": iso(job.created_at),
        **job_urls(base_url, job.id),
    }
    if job.status == JobStatus.QUEUED:
        if queue_position is None:
            if session is None:
                raise TypeError("a QUEUED job's position needs a session or a queue_position")
            queue_position = count_jobs_ahead(session, job)
        body["queue_position"] = queue_position
    elif job.status == JobStatus.PROCESSING:
        body["progress"] = progress_of(job)
        body["started_at"] = iso(job.started_at)
    else:
        body["finished_at"] = iso(job.finished_at)
        body["expires_at"] = iso(job.expires_at)
        body["metrics"] = metrics_of(job)
    if job.status == JobStatus.FAILED:
        body["error"] = job.error_message
        body["error_code"] = job.error_code
    return body


def result_body(job: Job, *, blobs: BlobStore, base_url: str, now: datetime, inline: bool) -> dict[str, Any]:
    """GET /v2/requests/{id} of a COMPLETED job: output URLs (or base64), seed, metrics, expiry."""
    if inline:
        output = output_inline(job, blobs=blobs)
    else:
        output = output_links(job, blobs=blobs, base_url=base_url, now=now)
    seeds = list(job.output_seeds or [])
    return {
        "request_id": job.id,
        "status": job.status,
        "model": job.model,
        "output": output,
        "output_format": "base64" if inline else "url",
        "seed": seeds[0] if seeds else job.params.get("seed"),
        "seeds": seeds,
        "metrics": metrics_of(job),
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
        "expires_at": iso(job.expires_at),
        "params": job.params,
        "nsfw": job.nsfw,
        "meta": modelslab.meta_of(job),  # what it ran with, in the Stable Diffusion API's terms
    }
