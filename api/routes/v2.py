"""Segmind v2 queue: submit, poll the status, fetch the result (seeds/003)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.deps import BaseUrl, ContextDep, CurrentKey, SessionDep
from api.submit import accept_job
from api.views import job_urls, result_body, status_body
from storage.contract import REQUEST_CLASSES
from storage.errors import NotFound
from storage.jobs import get_visible_job, utcnow
from storage.models import Job, JobStatus

router = APIRouter(prefix="/v2", tags=["v2 queue"])

JobId = Annotated[str, Path(max_length=64, description="The request_id that submit returned.")]


def find_job_or_404(session: SessionDep, job_id: str, key: CurrentKey) -> Job:
    job = get_visible_job(session, job_id, api_key_id=key.id, now=utcnow())
    if job is None:
        raise NotFound(f"request {job_id!r} was not found or has expired")
    return job


async def read_json_body(request: Request) -> Any:
    """The raw JSON body; the model's family decides which request class validates it."""
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        detail = getattr(exc, "msg", "parse error")
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                                       "input": None, "ctx": {"error": detail}}]) from None


def submit_body_schema() -> dict[str, Any]:
    """OpenAPI: the body is one of the family request classes (GET /v2/models gives each model's family)."""
    schemas = []
    for cls in dict.fromkeys(REQUEST_CLASSES.values()):
        families = ", ".join(f for f, c in REQUEST_CLASSES.items() if c is cls)
        doc = " ".join((cls.__doc__ or "").split())
        schemas.append(cls.model_json_schema() | {"description": f"Model families: {families}. {doc}"})
    body = {"schema": {"oneOf": schemas}}
    return {"requestBody": {"required": True, "content": {"application/json": body}}}


@router.post("/{model}", summary="Submit an inpainting job", response_description="The job is QUEUED",
             openapi_extra=submit_body_schema())
def submit(model: str, key: CurrentKey, body: Annotated[Any, Depends(read_json_body)], context: ContextDep,
           base_url: BaseUrl) -> dict[str, Any]:
    accepted = accept_job(context, key=key, model=model, body=body)
    return {"request_id": accepted.job_id, "status": JobStatus.QUEUED.value, **job_urls(base_url, accepted.job_id)}


@router.get("/requests/{job_id}/status", summary="Poll a job's status",
            responses={404: {"description": "Unknown or expired"}, 422: {"description": "The job FAILED"}})
def get_status(job_id: JobId, session: SessionDep, key: CurrentKey, base_url: BaseUrl) -> JSONResponse:
    job = find_job_or_404(session, job_id, key)
    body = status_body(session, job, base_url=base_url)
    return JSONResponse(body, status_code=422 if job.status == JobStatus.FAILED else 200)


@router.get("/requests/{job_id}", summary="Fetch a job's result",
            responses={202: {"description": "Not finished yet: the status body"},
                       404: {"description": "Unknown or expired"}, 422: {"description": "The job FAILED"}})
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
