"""The Stable Diffusion API enterprise `nsfw_image_check`: the safety checker's verdict on one image.

The API never runs a model: it checks the image like any input (format, size, pixels from its
header; a URL is fetched under the same SSRF rules and deadline, an upload link of the key is read
from storage), stores it, sends the check by name to the `inpaint` queue (worker.jobs.checks) and
waits up to INPAINT_SYNC_WAIT_SECONDS for the verdict. A check is not a job: no row, no credit, no
retry; a client whose check is not answered in time (504) sends it again.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from api.bodies import gated_json
from api.context import AppContext
from api.deps import ContextDep
from api.openapi import error_response, error_responses
from api.routes.uploads import get_uploader
from api.submit import input_limits, load_image
from storage.blobs.checks import check_image_key, read_verdict
from storage.blobs.store import with_retries
from storage.broker import QUEUE_INPAINT, TASK_CHECK_IMAGE, publish_task
from storage.database.models import ApiKey
from storage.errors import Unavailable

router = APIRouter(tags=["ModelsLab / Stable Diffusion API"])
POLL_SECONDS = 0.1
VERDICT_STATUS = {"invalid_input": 400, "model_unavailable": 503}
"""HTTP status of a check that ended without a verdict, by its error_code; any other: 500."""


class CheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(None, description="Your API key, when not sent as x-api-key.")
    init_image: str | None = Field(None, min_length=1, description="The image: URL, base64, data URI or upload link.")
    image: str | None = Field(None, min_length=1, description="The same as init_image (or, multipart, a file).")
    track_id: str | int | None = Field(None, description="Echoed in the answer.")

    @model_validator(mode="after")
    def _one_image(self) -> CheckBody:
        if (self.init_image is None) == (self.image is None):
            raise ValueError("send the image to check as init_image (or image), exactly once")
        return self

    @property
    def value(self) -> str:
        return self.init_image or self.image or ""


class CheckAnswer(BaseModel):
    status: Literal["success"]
    id: str = Field(description="The check's id, as in the worker's log.")
    nsfw: bool = Field(description="True when the safety checker flags the image.")
    has_nsfw_concept: bool = Field(description="The same verdict, under the diffusers safety checker's name.")
    checker: str = Field(description="The registered safety checker that ran.")
    track_id: str | int | None = None


def read_check_body(request: Request) -> CheckBody:
    try:
        return CheckBody.model_validate(gated_json(request) or {})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def store_and_send(context: AppContext, key: ApiKey, body: CheckBody) -> str:
    """Check the image as an input, store it and send the check; returns its id."""
    field = "init_image" if body.init_image is not None else "image"
    image = load_image(field, body.value, **input_limits(context, key))
    check_id = str(uuid.uuid4())
    stored = check_image_key(check_id)
    with_retries(lambda: context.blobs.put(stored, image.data, "application/octet-stream"), budget=2.0, what="a check")
    try:
        publish_task(context.celery, TASK_CHECK_IMAGE, check_id, queue=QUEUE_INPAINT)
    except Exception:  # noqa: BLE001 - the broker is down: say so; nothing was queued
        context.blobs.delete_prefix(stored)
        raise Unavailable("the queue cannot be reached; try again") from None
    return check_id


async def wait_for_verdict(context: AppContext, check_id: str, timeout: float) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        verdict = await run_in_threadpool(read_verdict, context.blobs, check_id)
        if verdict is not None or loop.time() >= deadline:
            return verdict
        await asyncio.sleep(POLL_SECONDS)


@router.post(
    "/api/v1/enterprise/nsfw_image_check",
    summary="Run the NSFW safety checker on one image",
    description="`init_image` (or `image`): a URL, base64, a data URI, an upload link of the key, or (multipart) "
    "a file. The registered safety checker runs on an inference worker; the answer waits for its verdict up to "
    "INPAINT_SYNC_WAIT_SECONDS (then 504: send it again). Any key: x-api-key, Bearer, or `key` in the body.",
    response_model=CheckAnswer,
    responses={
        **error_responses(400, 401, 413, 429),
        500: error_response(500, "The checker failed on the worker (`error_code: internal_error`; its log says why)"),
        503: error_response(503, "The queue is unreachable, or no safety checker can load (`model_unavailable`)"),
        504: error_response(504, "No verdict in time: the workers are busy or down; send the check again"),
    },
)
async def nsfw_image_check(
    request: Request, key: Annotated[ApiKey, Depends(get_uploader)], context: ContextDep
) -> JSONResponse:
    body = read_check_body(request)
    check_id = await run_in_threadpool(store_and_send, context, key, body)
    waited = context.settings.sync_wait_seconds
    verdict = await wait_for_verdict(context, check_id, waited)
    if verdict is None:
        message = f"the safety checker gave no verdict within {waited:g} s; send the check again"
        return JSONResponse({"error": message, "id": check_id}, status_code=504)
    if "error_code" in verdict:
        code = verdict["error_code"]
        content = {"error": verdict["error"], "error_code": code, "id": check_id}
        headers = {"Retry-After": "5"} if code == "model_unavailable" else None
        return JSONResponse(content, status_code=VERDICT_STATUS.get(code, 500), headers=headers)
    nsfw = bool(verdict["nsfw"])
    answer = {"status": "success", "id": check_id, "nsfw": nsfw, "has_nsfw_concept": nsfw}
    return JSONResponse({**answer, "checker": verdict["checker"], "track_id": body.track_id})
