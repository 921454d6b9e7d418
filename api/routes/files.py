"""Signed, expiring links to images: files of the local backend (the embedded default), and a
stable link per output image of a job, known before the job ends (ModelsLab's `future_links`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, Response

from api.deps import ContextDep
from storage.blobs.links import is_valid, signed_query
from storage.blobs.store import LocalBlobStore
from storage.database.engine import session_scope
from storage.database.jobs import get_job, utcnow
from storage.database.models import JobStatus
from storage.errors import NotFound

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}", summary="Download an image through a signed link", include_in_schema=False)
def get_file(
    key: str,
    context: ContextDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    blobs = context.blobs
    if not isinstance(blobs, LocalBlobStore) or not blobs.verify(key, expires, signature, now=utcnow()):
        raise NotFound("this link is invalid or has expired")
    path = blobs.path(key)
    if not path.is_file():
        raise NotFound("this link is invalid or has expired")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


def job_image_subject(job_id: str, index: int) -> str:
    return f"job-image:{job_id}:{index}"


def job_image_link(base_url: str, job_id: str, index: int, *, expires_at: datetime, signing_key: bytes) -> str:
    """A link to the job's `index`-th image that works without a key, once the image exists."""
    query = signed_query(job_image_subject(job_id, index), expires_at=expires_at, key=signing_key)
    return f"{base_url}/v2/requests/{job_id}/images/{index}?{query}"


@router.get(
    "/v2/requests/{job_id}/images/{index}", summary="An output image through a signed link", include_in_schema=False
)
def get_job_image(
    job_id: Annotated[str, Path(max_length=64)],
    index: Annotated[int, Path(ge=0, le=16)],
    context: ContextDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> Response:
    now = utcnow()
    if not is_valid(job_image_subject(job_id, index), expires, signature, key=context.settings.signing_key, now=now):
        raise NotFound("this link is invalid or has expired")
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        keys = list(job.output_keys or []) if job else []
        live = job is not None and job.expired_at is None and (job.expires_at is None or job.expires_at > now)
    if not live or job is None or job.status != JobStatus.COMPLETED.value or index >= len(keys):
        raise NotFound("this image does not exist (yet, or any more)")
    return Response(
        content=context.blobs.get(keys[index]),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=300"},
    )
