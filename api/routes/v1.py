"""Segmind v1, synchronous (Segmind inpaint-auto, Segmind SDXL inpaint, Segmind SD 1.5 inpainting):
the same job and queue as v2, waited for.

The answer is the image itself (image/png), with the seed and request id in headers;
`base64: true` answers JSON instead. A job not done within INPAINT_SYNC_WAIT_SECONDS
answers 504 with its request_id and status_url, in the body and in headers, so the
client can still collect the result from the v2 routes without paying again.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.bodies import JsonBody, submit_body_schema
from api.deps import BaseUrl, ContextDep, IdempotencyKeyHeader, ModelSlug
from api.limits import SubmitKey
from api.live.waiting import wait_for_end
from api.openapi import error_response, error_responses
from api.schemas import SyncFailed, SyncImage, SyncTimeout
from api.submit import accept_job, idempotency_of
from api.views import job_urls
from storage.database.models import JobStatus

router = APIRouter(prefix="/v1", tags=["v1 synchronous"])


@router.post(
    "/{model}",
    summary="Inpaint and wait for the image",
    openapi_extra=submit_body_schema(),
    responses={
        200: {
            "model": SyncImage,
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The first image as PNG, with X-Request-Id, X-Seed, X-Seeds and X-Inference-Time "
            "headers; JSON with every image in base64 when the body asked for `base64: true`",
        },
        **error_responses(400, 403, 406, 409, 413, 429),
        404: error_response(404, "Unknown model; GET /v2/models lists them"),
        422: {"model": SyncFailed, "description": "The job FAILED"},
        504: {"model": SyncTimeout, "description": "Not done in time: request_id and status_url to collect it later"},
    },
)
async def submit_and_wait(
    model: ModelSlug,
    key: SubmitKey,
    body: JsonBody,
    context: ContextDep,
    base_url: BaseUrl,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    idempotency = idempotency_of(idempotency_key, f"/v1/{model}", body)
    accepted = await run_in_threadpool(
        lambda: accept_job(context, key=key, model=model, body=body, base_url=base_url, idempotency=idempotency)
    )
    urls = job_urls(base_url, accepted.job_id)
    job = await wait_for_end(context, accepted.job_id, timeout=context.settings.sync_wait_seconds)
    headers = {"X-Request-Id": accepted.job_id, "X-Status-Url": urls["status_url"]}
    if job is None:
        waited = context.settings.sync_wait_seconds
        return JSONResponse(
            status_code=504,
            headers=headers,
            content={
                "error": f"the job did not finish within {waited:g} s; it is still running: poll status_url",
                "request_id": accepted.job_id,
                **urls,
            },
        )
    if job.status == JobStatus.FAILED:
        return JSONResponse(
            status_code=422,
            headers=headers,
            content={
                "error": job.error_message,
                "error_code": job.error_code,
                "status": job.status,
                "request_id": job.id,
                **urls,
            },
        )
    images = [await run_in_threadpool(context.blobs.get, k) for k in job.output_keys or []]
    seeds = list(job.output_seeds or [])
    headers |= {
        "X-Seed": str(seeds[0]),
        "X-Seeds": ",".join(map(str, seeds)),
        "X-Inference-Time": f"{job.inference_time:.3f}",
    }
    if job.base64_output:
        content: dict[str, Any] = {
            "image": base64.b64encode(images[0]).decode(),
            "status": job.status,
            "images": [base64.b64encode(i).decode() for i in images],
            "seed": seeds[0],
            "seeds": seeds,
            "request_id": job.id,
            "metrics": {"inference_time": job.inference_time},
        }
        return JSONResponse(content, headers=headers)
    return Response(content=images[0], media_type="image/png", headers=headers)
