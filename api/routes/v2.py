"""Segmind v2 queue: submit, poll the status, fetch the result (Segmind SD 1.5 inpainting (v2 queue))."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from api.bodies import JsonBody, submit_body_schema
from api.deps import BaseUrl, ContextDep, CurrentKey, IdempotencyKeyHeader, ModelSlug, SessionDep
from api.limits import SubmitKey
from api.openapi import error_response, error_responses
from api.schemas import JobState, Result, SubmitAnswer
from api.submit import accept_job, idempotency_of
from api.views import job_urls, result_body, status_body
from storage.database.jobs import get_visible_job, utcnow
from storage.database.models import Job, JobStatus
from storage.errors import NotFound

router = APIRouter(prefix="/v2", tags=["v2 queue"])

JobId = Annotated[str, Path(max_length=64, description="The request_id that submit returned.")]


def find_job_or_404(session: SessionDep, job_id: str, key: CurrentKey) -> Job:
    job = get_visible_job(session, job_id, api_key_id=key.id, now=utcnow())
    if job is None:
        raise NotFound(f"request {job_id!r} was not found or has expired")
    return job


@router.post(
    "/{model}",
    summary="Submit an inpainting job",
    response_description="The job is QUEUED",
    openapi_extra=submit_body_schema(),
    response_model=None,
    responses={
        200: {"model": SubmitAnswer},
        **error_responses(400, 403, 406, 409, 413, 429),
        404: error_response(404, "Unknown model; GET /v2/models lists them"),
    },
)
def submit(
    model: ModelSlug,
    key: SubmitKey,
    body: JsonBody,
    context: ContextDep,
    base_url: BaseUrl,
    idempotency_key: IdempotencyKeyHeader = None,
) -> dict[str, Any]:
    idempotency = idempotency_of(idempotency_key, f"/v2/{model}", body)
    accepted = accept_job(context, key=key, model=model, body=body, base_url=base_url, idempotency=idempotency)
    return {
        "request_id": accepted.job_id,
        "status": JobStatus.QUEUED.value,
        **job_urls(base_url, accepted.job_id),
        **({"idempotent_replay": True} if accepted.replayed else {}),
    }


@router.get(
    "/requests/{job_id}/status",
    summary="Poll a job's status",
    responses={
        200: {"model": JobState, "description": "QUEUED, PROCESSING or COMPLETED"},
        404: error_response(404, "Unknown or expired"),
        422: {"model": JobState, "description": "The job FAILED: `error` and `error_code` say why"},
    },
)
def get_status(job_id: JobId, session: SessionDep, key: CurrentKey, base_url: BaseUrl) -> JSONResponse:
    job = find_job_or_404(session, job_id, key)
    body = status_body(session, job, base_url=base_url)
    return JSONResponse(body, status_code=422 if job.status == JobStatus.FAILED else 200)


@router.get(
    "/requests/{job_id}",
    summary="Fetch a job's result",
    responses={
        200: {"model": Result, "description": "The job is COMPLETED"},
        202: {"model": JobState, "description": "Not finished yet: the status body"},
        404: error_response(404, "Unknown or expired"),
        422: {"model": JobState, "description": "The job FAILED: the status body, with `error` and `error_code`"},
    },
)
def get_result(
    job_id: JobId,
    session: SessionDep,
    key: CurrentKey,
    context: ContextDep,
    base_url: BaseUrl,
    base64: Annotated[bool | None, Query(description="Images inline as base64; default: as submitted.")] = None,
) -> JSONResponse:
    job = find_job_or_404(session, job_id, key)
    if job.status != JobStatus.COMPLETED:
        status_code = 422 if job.status == JobStatus.FAILED else 202
        return JSONResponse(status_body(session, job, base_url=base_url), status_code=status_code)
    inline = job.base64_output if base64 is None else base64
    return JSONResponse(result_body(job, blobs=context.blobs, base_url=base_url, now=utcnow(), inline=inline))
