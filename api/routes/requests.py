"""Native additions on a job: cancel it, list them, follow one live (server-sent events)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.context import AppContext
from api.deps import BaseUrl, ContextDep, CurrentKey, SessionDep
from api.live.watcher import JobView
from api.openapi import error_response
from api.routes.v2 import JobId, find_job_or_404
from api.schemas import CancelAnswer, JobList
from api.views import result_body, status_body
from storage.broker import TASK_WEBHOOK_JOB_FINISHED, publish_task
from storage.database.engine import session_scope
from storage.database.jobs import fail_job, get_job, get_visible_job, list_jobs, utcnow
from storage.database.models import JobStatus
from storage.errors import InvalidInput, NotFound

router = APIRouter(prefix="/v2", tags=["v2 native"])

SSE_KEEPALIVE_SECONDS = 15.0
RANK = {JobStatus.QUEUED: 1, JobStatus.PROCESSING: 2, JobStatus.COMPLETED: 3, JobStatus.FAILED: 3}


@router.post(
    "/requests/{job_id}/cancel",
    summary="Cancel a job",
    description="A QUEUED job is removed; a PROCESSING one stops at its next step. Either ends FAILED "
    'with `error: "cancelled"`, so clients that poll stop. `cancelled` says whether this '
    "call cancelled it or it had already finished.",
    response_model=None,
    responses={200: {"model": CancelAnswer}, 404: error_response(404, "Unknown or expired")},
)
def cancel(job_id: JobId, key: CurrentKey, context: ContextDep) -> dict[str, Any]:
    with session_scope(context.sessions) as reader:
        job = find_job_or_404(reader, job_id, key)
    with session_scope(context.sessions) as writer:
        cancelled = fail_job(
            writer, job.id, code="cancelled", message="cancelled", now=utcnow(), ttl=context.settings.result_ttl
        )
    with session_scope(context.sessions) as reader:
        current = get_job(reader, job.id)
        now_status = current.status if current else job.status
    if cancelled and job.webhook_url:
        try:
            publish_task(context.celery, TASK_WEBHOOK_JOB_FINISHED, job.id)
        except Exception:  # noqa: BLE001 - the webhook dispatcher sends it anyway
            pass
    outcome = "cancelled" if cancelled else f"already_{now_status.lower()}"
    return {"request_id": job.id, "cancelled": cancelled, "outcome": outcome, "status": now_status}


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), job_id]).encode()).decode()


CURSOR_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor names. Anything else is a 400: a crafted cursor never reaches the database."""
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        at = datetime.fromisoformat(created)
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput("cursor", "is not a cursor this API returned", value=cursor) from None
    if not isinstance(job_id, str) or not CURSOR_ID.fullmatch(job_id):
        raise InvalidInput("cursor", "is not a cursor this API returned", value=cursor)
    return at, job_id


@router.get(
    "/requests", summary="List your jobs, newest first", response_model=None, responses={200: {"model": JobList}}
)
def list_requests(
    session: SessionDep,
    key: CurrentKey,
    base_url: BaseUrl,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    jobs = list_jobs(
        session,
        api_key_id=key.id,
        now=utcnow(),
        status=status,
        limit=limit + 1,
        before=decode_cursor(cursor) if cursor else None,
    )
    page, more = jobs[:limit], len(jobs) > limit
    return {
        "requests": [{**status_body(session, job, base_url=base_url), "track_id": job.track_id} for job in page],
        "next_cursor": encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    }


def render(context: AppContext, view: JobView, base_url: str) -> tuple[str, str, dict[str, Any]]:
    """(event id, event name, data) for a job as the watcher saw it. Ids order like the states they name."""
    job = view.job
    if job is None:
        return "9.0", "error", {"error": "the request was not found or has expired"}
    status = JobStatus(job.status)
    if status == JobStatus.COMPLETED:
        body = result_body(job, blobs=context.blobs, base_url=base_url, now=utcnow(), inline=False)
    else:
        body = status_body(None, job, base_url=base_url, queue_position=view.queue_position)
    if status == JobStatus.QUEUED:
        minor = 1_000_000 - view.queue_position
    elif status == JobStatus.PROCESSING:
        minor = body["progress"]["step"]
    else:
        minor = 0
    name = {
        JobStatus.QUEUED: "queued",
        JobStatus.PROCESSING: "progress",
        JobStatus.COMPLETED: "completed",
        JobStatus.FAILED: "failed",
    }[status]
    return f"{RANK[status]}.{minor}", name, body


def event_key(event_id: str | None) -> tuple[int, int]:
    try:
        major, minor = (event_id or "0.0").split(".")
        return int(major), int(minor)
    except ValueError:
        return 0, 0


async def follow(context: AppContext, job_id: str, base_url: str, last_event_id: str | None) -> AsyncIterator[str]:
    """The stream's events: each change the watcher hands over, a comment every 15 quiet seconds.
    It subscribes when the response starts, so a stream that never starts leaves nothing behind."""
    last = event_key(last_event_id)
    subscription = context.watcher.subscribe(job_id)
    try:
        while True:
            view = await subscription.next(SSE_KEEPALIVE_SECONDS)
            if view is None:
                yield ": keep-alive\n\n"
                continue
            event_id, name, data = render(context, view, base_url)
            if event_key(event_id) > last:
                last = event_key(event_id)
                yield f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            if name in ("completed", "failed", "error"):
                return
    finally:
        context.watcher.unsubscribe(subscription)


def visible(context: AppContext, job_id: str, api_key_id: int) -> bool:
    with session_scope(context.sessions) as session:
        return get_visible_job(session, job_id, api_key_id=api_key_id, now=utcnow()) is not None


@router.get(
    "/requests/{job_id}/events",
    summary="Follow a job live (server-sent events)",
    response_class=StreamingResponse,
    description="Events `queued` (with queue_position), `progress` (step, total, percent), then "
    "`completed` (the result body) or `failed`; the stream closes at a terminal state. "
    "Reconnect with `Last-Event-ID` to resume after the last event seen.",
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "The event stream"},
        404: error_response(404, "Unknown or expired"),
    },
)
async def events(
    job_id: JobId,
    key: CurrentKey,
    context: ContextDep,
    base_url: BaseUrl,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    if not await run_in_threadpool(visible, context, job_id, key.id):
        raise NotFound(f"request {job_id!r} was not found or has expired")
    return StreamingResponse(
        follow(context, job_id, base_url, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
