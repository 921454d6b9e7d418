"""Batch submission: up to 100 job bodies in one request; one bad item never sinks the others."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from api.context import AppContext
from api.deps import BaseUrl, ContextDep, CurrentKey, IdempotencyKeyHeader
from api.errors import STATUS_BY_ERROR, describe_validation_error
from api.limits import admit
from api.submit import Idempotency, accept_job, previous_result
from api.views import job_urls
from storage.database.batches import create_batch, get_batch, job_states, record_items, summarise
from storage.database.engine import session_scope
from storage.database.idempotency import request_hash, reserve
from storage.database.jobs import utcnow
from storage.database.models import ApiKey
from storage.errors import InpaintError, NotFound

router = APIRouter(prefix="/v2", tags=["v2 native"])

MAX_ITEMS = 100


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_ITEMS,
        description="Job bodies, each the body of POST /v2/{model} plus `model`.",
    )


def accept_item(
    context: AppContext, key: ApiKey, raw: dict[str, Any], *, base_url: str, batch_id: str
) -> dict[str, Any]:
    """One item: its request_id, or the HTTP status and message that would have rejected it alone."""
    body = dict(raw)
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        return {"http_status": 400, "error": "model: is required (the slug, as in POST /v2/{model})"}
    try:
        admit(context, key, model)
        accepted = accept_job(context, key=key, model=model, body=body, base_url=base_url, batch_id=batch_id)
    except RequestValidationError as exc:  # the body, checked with the request class of the model's family
        errors = [describe_validation_error(e) for e in exc.errors()]
        return {"http_status": 400, "error": "; ".join(e["message"] for e in errors), "errors": errors}
    except InpaintError as exc:
        status = next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 500)
        return {"http_status": status, "error": exc.message}
    return {"request_id": accepted.job_id, **job_urls(base_url, accepted.job_id)}


@router.post(
    "/batch",
    summary="Submit up to 100 jobs at once",
    description="Each item is validated and accepted on its own: accepted items get a request_id, "
    "rejected ones the status and message they would have got alone.",
)
def submit_batch(
    body: Annotated[BatchRequest, Body()],
    key: CurrentKey,
    context: ContextDep,
    base_url: BaseUrl,
    idempotency_key: IdempotencyKeyHeader = None,
) -> dict[str, Any]:
    digest = request_hash("/v2/batch", body.model_dump(mode="json")) if idempotency_key else ""
    if idempotency_key and (previous := previous_result(context, key, Idempotency(idempotency_key, digest))):
        return batch_summary(context, previous, key) | {"idempotent_replay": True}
    batch_id = str(uuid.uuid4())
    try:
        with session_scope(context.sessions) as session:
            create_batch(session, batch_id=batch_id, api_key_id=key.id, now=utcnow())
            if idempotency_key:
                reserve(
                    session, api_key_id=key.id, key=idempotency_key, digest=digest, result_id=batch_id, now=utcnow()
                )
    except IntegrityError:  # an identical batch won the race for this Idempotency-Key
        previous = previous_result(context, key, Idempotency(idempotency_key or "", digest))
        if previous:
            return batch_summary(context, previous, key) | {"idempotent_replay": True}
        raise
    items = [
        {"index": i, **accept_item(context, key, raw, base_url=base_url, batch_id=batch_id)}
        for i, raw in enumerate(body.requests)
    ]
    with session_scope(context.sessions) as session:
        record_items(session, batch_id, items)
    accepted = sum(1 for item in items if "request_id" in item)
    return {"batch_id": batch_id, "accepted": accepted, "rejected": len(items) - accepted, "items": items}


def batch_summary(context: AppContext, batch_id: str, key: ApiKey) -> dict[str, Any]:
    with session_scope(context.sessions) as session:
        batch = get_batch(session, batch_id, api_key_id=key.id)
        if batch is None:
            raise NotFound(f"batch {batch_id!r} was not found")
        return summarise(batch, job_states(session, batch_id))


@router.get("/batch/{batch_id}", summary="Summarise a batch's jobs")
def get_batch_status(
    batch_id: Annotated[str, Path(max_length=64)], key: CurrentKey, context: ContextDep
) -> dict[str, Any]:
    return batch_summary(context, batch_id, key)
