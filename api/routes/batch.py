"""Batch submission: up to 100 job bodies in one request; one bad item never sinks the others.

Atomic: every item is checked (body, model, rate, images) before anything is stored;
then the inputs of the good ones are put, and the batch, its jobs, their credits and
the Idempotency-Key are written in one transaction; only then is anything published.
So an answer is either 200 with each bad item refused on its own line, or an error
with nothing queued, never a 5xx after something was queued and charged."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from api.context import AppContext
from api.deps import BaseUrl, ContextDep, CurrentKey, IdempotencyKeyHeader
from api.errors import STATUS_BY_ERROR, describe_validation_error
from api.limits import admit
from api.openapi import error_responses
from api.schemas import BatchAnswer, BatchSummary
from api.submit import (
    Idempotency,
    PreparedJob,
    discard_inputs,
    insert_job,
    out_of_credits,
    prepare_job,
    previous_result,
    publish_or_defer,
    store_inputs,
)
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


def prepare_item(context: AppContext, key: ApiKey, raw: dict[str, Any]) -> PreparedJob | dict[str, Any]:
    """One item, checked and ready to record; or the HTTP status and message that would have rejected it alone."""
    body = dict(raw)
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        return {"http_status": 400, "error": "model: is required (the slug, as in POST /v2/{model})"}
    try:
        admit(context, key, model)
        return prepare_job(context, key=key, model=model, body=body)
    except RequestValidationError as exc:  # the body, checked with the request class of the model's family
        errors = [describe_validation_error(e) for e in exc.errors()]
        return {"http_status": 400, "error": "; ".join(e["message"] for e in errors), "errors": errors}
    except InpaintError as exc:
        status = next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 500)
        return {"http_status": status, "error": exc.message}


@router.post(
    "/batch",
    summary="Submit up to 100 jobs at once",
    response_model=None,
    responses={
        200: {
            "model": BatchAnswer | BatchSummary,
            "description": "The items' outcomes; a replayed Idempotency-Key answers the batch's summary instead",
        },
        **error_responses(409, 413),
    },
    description="All or nothing stored: every item is checked first, then the accepted ones are recorded "
    "in one transaction and queued. Accepted items get a request_id, rejected ones the status and message "
    "they would have got alone; an error answer means nothing was queued. With an Idempotency-Key, a "
    "retried batch returns the first one's summary instead of queueing it again.",
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
    outcomes = [prepare_item(context, key, raw) for raw in body.requests]
    prepared = [outcome for outcome in outcomes if isinstance(outcome, PreparedJob)]
    store_inputs(context, prepared)  # storage away: a 503 before anything was recorded
    try:
        with session_scope(context.sessions) as session:
            create_batch(session, batch_id=batch_id, api_key_id=key.id, now=utcnow())  # the write comes first
            if idempotency_key:
                reserve(
                    session, api_key_id=key.id, key=idempotency_key, digest=digest, result_id=batch_id, now=utcnow()
                )
            items, recorded = record_outcomes(session, outcomes, key=key, base_url=base_url, batch_id=batch_id)
            record_items(session, batch_id, items)
    except IntegrityError:  # an identical batch won the race for this Idempotency-Key
        discard_inputs(context, prepared)
        previous = previous_result(context, key, Idempotency(idempotency_key or "", digest))
        if previous:
            return batch_summary(context, previous, key) | {"idempotent_replay": True}
        raise
    except SQLAlchemyError:
        discard_inputs(context, prepared)  # nothing was recorded: a 503 that means it
        raise
    kept = {job.job_id for job in recorded}
    discard_inputs(context, [job for job in prepared if job.job_id not in kept])  # refused for credits
    for job in recorded:
        publish_or_defer(context, job.job_id, job.spec.queue)
    return {"batch_id": batch_id, "accepted": len(recorded), "rejected": len(items) - len(recorded), "items": items}


def record_outcomes(
    session: Session, outcomes: list[PreparedJob | dict[str, Any]], *, key: ApiKey, base_url: str, batch_id: str
) -> tuple[list[dict[str, Any]], list[PreparedJob]]:
    """Insert each prepared job (its credits taken, in the caller's transaction); the batch's items
    in order, and the jobs recorded. A job the key has no credits left for is refused on its own (406)."""
    items: list[dict[str, Any]] = []
    recorded: list[PreparedJob] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, PreparedJob):
            if insert_job(session, outcome, key=key, base_url=base_url, batch_id=batch_id):
                recorded.append(outcome)
                items.append({"index": index, "request_id": outcome.job_id, **job_urls(base_url, outcome.job_id)})
                continue
            outcome = {"http_status": 406, "error": out_of_credits(None, outcome.params.samples).message}
        items.append({"index": index, **outcome})
    return items, recorded


def batch_summary(context: AppContext, batch_id: str, key: ApiKey) -> dict[str, Any]:
    with session_scope(context.sessions) as session:
        batch = get_batch(session, batch_id, api_key_id=key.id)
        if batch is None:
            raise NotFound(f"batch {batch_id!r} was not found")
        return summarise(batch, job_states(session, batch_id))


@router.get(
    "/batch/{batch_id}",
    summary="Summarise a batch's jobs",
    response_model=None,
    responses={200: {"model": BatchSummary}, **error_responses(404)},
)
def get_batch_status(
    batch_id: Annotated[str, Path(max_length=64)], key: CurrentKey, context: ContextDep
) -> dict[str, Any]:
    return batch_summary(context, batch_id, key)
