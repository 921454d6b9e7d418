"""A job's webhook log, redelivery, and rotating the caller's signing secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter

from api.deps import ContextDep, CurrentKey, SessionDep
from api.openapi import error_response
from api.routes.v2 import JobId, find_job_or_404
from api.schemas import Redelivery, SecretRotation, WebhookLog
from storage.broker import TASK_WEBHOOK_DELIVER, publish_task
from storage.database.engine import session_scope, write_scope
from storage.database.jobs import utcnow
from storage.database.models import ApiKey
from storage.database.webhooks import list_deliveries, reopen_terminal_delivery, rotate_secret
from storage.errors import Conflict
from storage.wire.results import iso

router = APIRouter(prefix="/v2", tags=["webhooks"])


@router.get(
    "/requests/{job_id}/webhooks",
    summary="List a job's webhook events and every delivery attempt",
    response_model=None,
    responses={200: {"model": WebhookLog}, 404: error_response(404, "Unknown or expired")},
)
def get_webhook_log(job_id: JobId, session: SessionDep, key: CurrentKey) -> dict[str, Any]:
    job = find_job_or_404(session, job_id, key)
    return {
        "request_id": job.id,
        "webhook": job.webhook_url,
        "track_id": job.track_id,
        "events": [
            {
                "webhook_id": view.delivery.id,
                "type": view.delivery.event_type,
                "status": view.delivery.status,
                "created_at": iso(view.delivery.created_at),
                "next_attempt_at": iso(view.delivery.next_attempt_at) if view.delivery.status == "pending" else None,
                "attempts": [
                    {
                        "number": a.number,
                        "at": iso(a.attempted_at),
                        "status_code": a.status_code,
                        "error": a.error,
                        "latency_ms": a.latency_ms,
                    }
                    for a in view.attempts
                ],
            }
            for view in list_deliveries(session, job.id)
        ],
    }


@router.post(
    "/requests/{job_id}/webhooks/redeliver",
    summary="Send the terminal event again, with the same webhook-id",
    response_model=None,
    responses={
        200: {"model": Redelivery},
        404: error_response(404, "Unknown or expired"),
        409: error_response(409, "The job has no webhook, or has not ended yet"),
    },
)
def redeliver(job_id: JobId, key: CurrentKey, context: ContextDep) -> dict[str, Any]:
    with session_scope(context.sessions) as reader:
        job = find_job_or_404(reader, job_id, key)
    if job.webhook_url is None:
        raise Conflict("this job was submitted without a webhook")
    with write_scope(context.sessions) as writer:
        delivery = reopen_terminal_delivery(writer, job, now=utcnow())
        delivery_id = delivery.id if delivery else None
    if delivery_id is None:
        raise Conflict("this job has no terminal event yet; it is sent when the job ends")
    try:
        publish_task(context.celery, TASK_WEBHOOK_DELIVER, delivery_id)
    except Exception:  # noqa: BLE001 - the periodic dispatcher sends it anyway
        pass
    return {"request_id": job.id, "webhook_id": delivery_id, "status": "pending"}


@router.post(
    "/webhook-secret/rotate",
    summary="Rotate this key's webhook signing secret",
    response_description="The new secret, shown once",
    response_model=None,
    responses={200: {"model": SecretRotation}},
)
def rotate_webhook_secret(key: CurrentKey, context: ContextDep) -> dict[str, Any]:
    overlap = timedelta(seconds=context.settings.webhook_secret_overlap_seconds)
    with write_scope(context.sessions) as writer:
        record = writer.get(ApiKey, key.id)
        assert record is not None
        secret = rotate_secret(writer, record, now=utcnow(), overlap=overlap)
        until = record.webhook_secret_previous_until
    return {"webhook_secret": secret, "previous_secret_valid_until": iso(until)}
