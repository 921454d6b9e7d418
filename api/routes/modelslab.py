"""ModelsLab v6 inpaint and Stable Diffusion API enterprise routes: the key in the JSON body,
numbers as strings, base64 as "yes"/"no", and answers shaped `{status: success | processing | error, ...}`.

They are adapters onto the one contract and the one queue: a body is translated
(storage.wire.modelslab) and accepted exactly like POST /v2/{model}.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.bodies import gated_json
from api.context import AppContext
from api.errors import STATUS_BY_ERROR, describe_validation_error
from api.limits import admit
from api.live.waiting import wait_for_end
from api.openapi import modelslab_docs
from api.routes.files import job_image_link
from api.schemas import ModelsLabBody, ModelsLabFetchBody
from api.submit import Idempotency, accept_job, idempotency_of
from storage.database.engine import session_scope
from storage.database.jobs import count_jobs_ahead, find_job_id, get_visible_job, mean_inference_time, utcnow
from storage.database.keys import find_key
from storage.database.models import ApiKey, Job, JobStatus
from storage.errors import InpaintError, InvalidInput, NotFound, Unauthorized
from storage.wire import modelslab
from storage.wire.results import output_inline, output_links

router = APIRouter(tags=["ModelsLab / Stable Diffusion API"])

# The hosted APIs' own paths, and those modelslab-py (0.2.3) builds: its image-editing API
# (`image_editing/`) and its community API (`images/`), each under v6 and, in enterprise mode,
# under v1/enterprise; fetch is "fetch/{id}" under the same base.
SUBMIT_PATHS = [
    "/api/v6/image_editing/inpaint",
    "/api/v6/images/inpaint",
    "/api/v1/enterprise/inpaint",
    "/api/v1/enterprise/image_editing/inpaint",
    "/api/v1/enterprise/images/inpaint",
]
FETCH_PATHS = [
    "/api/v6/image_editing/fetch/{job_id}",
    "/api/v6/images/fetch/{job_id}",
    "/api/v1/enterprise/fetch/{job_id}",
    "/api/v1/enterprise/image_editing/fetch/{job_id}",
    "/api/v1/enterprise/images/fetch/{job_id}",
]
MAX_IDEMPOTENCY_KEY = 255


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, **extra}, status_code=status)


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON object the input gate (api.edge.gate) parsed; {} for an empty body."""
    body = gated_json(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InpaintError("the body must be a JSON object")
    return body


def key_of(context: AppContext, request: Request, body: dict[str, Any]) -> ApiKey:
    secret = body.get("key") or request.headers.get("x-api-key")
    if not secret or not isinstance(secret, str):
        raise Unauthorized("missing API key: send it as `key` in the body (or the x-api-key header)")
    with session_scope(context.sessions) as session:
        key = find_key(session, secret)
        if key is None:
            raise Unauthorized("unknown or revoked API key")
        session.expunge(key)
        return key


def base_url_of(context: AppContext, request: Request) -> str:
    return (context.settings.public_url or str(request.base_url)).rstrip("/")


def answer_for(context: AppContext, job: Job, *, base_url: str, inline: bool) -> dict[str, Any]:
    if JobStatus(job.status).terminal:
        output = (
            output_inline(job, blobs=context.blobs)
            if inline and job.status == "COMPLETED"
            else output_links(job, blobs=context.blobs, base_url=base_url, now=utcnow())
        )
        return modelslab.final_body(job, output)
    with session_scope(context.sessions) as session:
        ahead = count_jobs_ahead(session, job) if job.status == JobStatus.QUEUED.value else 0
        each = mean_inference_time(session, job.model)
    fetch_path = f"/api/v6/image_editing/fetch/{job.number}"
    valid_until = (
        job.created_at + timedelta(seconds=context.settings.job_time_limit_seconds) + context.settings.result_ttl
    )
    links = [
        job_image_link(base_url, job.id, i, expires_at=valid_until, signing_key=context.settings.signing_key)
        for i in range(int(job.params.get("samples", 1)))
    ]
    return {
        "status": "processing",
        "id": job.number,
        "eta": round(each * (ahead + 1), 1),
        "message": "the job is queued or running; POST {key} to fetch_result for the outcome",
        "fetch_result": base_url + fetch_path,
        "future_links": links,
        "output": [],
        "meta": modelslab.meta_of(job),
    }


def status_of(answer: dict[str, Any]) -> int:
    return 422 if answer["status"] == "error" else 200


def idempotency_for(request: Request, body: dict[str, Any]) -> Idempotency | None:
    """The Idempotency-Key header, as on POST /v2/{model}; the body's `key` (the secret) is not hashed."""
    header = request.headers.get("idempotency-key")
    if header is not None and len(header) > MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(
            "Idempotency-Key", f"must be at most {MAX_IDEMPOTENCY_KEY} characters", limit=MAX_IDEMPOTENCY_KEY
        )
    return idempotency_of(header, request.url.path, {k: v for k, v in body.items() if k != "key"})


def submit(
    context: AppContext, request: Request, body: dict[str, Any], translated: modelslab.Translated
) -> tuple[ApiKey, str, bool, bool]:
    """Validate and accept; returns (key, job id, inline output, answer at once)."""
    key = key_of(context, request, body)
    admit(context, key, translated.model)
    accepted = accept_job(
        context,
        key=key,
        model=translated.model,
        body=translated.fields,
        base_url=base_url_of(context, request),
        idempotency=idempotency_for(request, body),
        api_format=modelslab.FORMAT,
        defaults=modelslab.DEFAULTS,
        ranges=modelslab.RANGES,
        not_applied=translated.not_applied,
    )
    inline = translated.fields.get("base64") is True
    return key, accepted.job_id, inline, modelslab.is_yes(body.get("instant_response"))


def renamed(message: str, ours: str, theirs: str) -> str:
    """An error message that starts with our field name, starting with the client's instead."""
    return theirs + message[len(ours) :] if ours != theirs and message.startswith(ours) else message


def validation_error(exc: RequestValidationError, translated: modelslab.Translated) -> JSONResponse:
    errors = []
    for described in (describe_validation_error(e) for e in exc.errors()):
        theirs = translated.wire_name(str(described.get("field")))
        errors.append(
            {**described, "field": theirs, "message": renamed(described["message"], described["field"], theirs)}
        )
    return error(400, "; ".join(e["message"] for e in errors), errors=errors)


def input_error(exc: InpaintError, translated: modelslab.Translated | None) -> JSONResponse:
    message = exc.message
    if isinstance(exc, InvalidInput) and translated is not None:
        message = renamed(message, exc.field, translated.wire_name(exc.field))
    return error(next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 400), message)


async def inpaint(request: Request) -> JSONResponse:
    context: AppContext = request.app.state.context
    translated: modelslab.Translated | None = None
    try:
        body = await read_body(request)
        translated = modelslab.translate(body, unknown=context.settings.modelslab_unknown_fields)
        key, job_id, inline, instant = await run_in_threadpool(submit, context, request, body, translated)
    except RequestValidationError as exc:  # the body, checked with the request class of the model's family
        return validation_error(exc, translated) if translated else error(400, "the body is not valid")
    except InpaintError as exc:
        return input_error(exc, translated)
    waited = 0.0 if instant else context.settings.modelslab_wait_seconds
    job = await wait_for_end(context, job_id, timeout=waited) if waited else None
    if job is None:
        job = await run_in_threadpool(load, context, job_id, key.id)
    answer = await run_in_threadpool(answer_for, context, job, base_url=base_url_of(context, request), inline=inline)
    return JSONResponse(answer, status_code=status_of(answer))


def load(context: AppContext, job_id: str, api_key_id: int) -> Job:
    """The job by its integer id (what these routes answer) or by its UUID (what /v2 answers)."""
    with session_scope(context.sessions) as session:
        found = find_job_id(session, int(job_id)) if job_id.isdigit() and len(job_id) < 19 else job_id
        job = get_visible_job(session, found, api_key_id=api_key_id, now=utcnow()) if found else None
        if job is None:
            raise NotFound(f"request {job_id!r} was not found or has expired")
        session.expunge(job)
        return job


async def fetch(request: Request, job_id: str | None = None) -> JSONResponse:
    context: AppContext = request.app.state.context
    try:
        body = await read_body(request)
        key = await run_in_threadpool(key_of, context, request, body)
        wanted = job_id or body.get("request_id") or body.get("id")
        if not isinstance(wanted, str | int):
            return error(400, "request_id: is required")
        job = await run_in_threadpool(load, context, str(wanted), key.id)
        answer = await run_in_threadpool(
            answer_for, context, job, base_url=base_url_of(context, request), inline=job.base64_output
        )
    except InpaintError as exc:
        return error(next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 400), exc.message)
    return JSONResponse(answer, status_code=status_of(answer))


for path in SUBMIT_PATHS:
    router.add_api_route(path, inpaint, methods=["POST"], summary=f"Inpaint ({path})", **modelslab_docs(ModelsLabBody))
for path in FETCH_PATHS:
    router.add_api_route(
        path, fetch, methods=["POST"], summary=f"Fetch a result ({path})", **modelslab_docs(ModelsLabFetchBody)
    )
router.add_api_route(
    "/api/v1/enterprise/fetch_queue_image",
    fetch,
    methods=["POST"],
    summary="Fetch a queued result (body: key, request_id)",
    **modelslab_docs(ModelsLabFetchBody),
)
