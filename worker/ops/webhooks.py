"""Webhook events: writing them, sending them, retrying them. Runs on the light `webhooks` queue.

Nothing here imports torch, and nothing here can hold up inference: the inference
worker only publishes nudges. Every attempt goes through storage.egress.fetch (public
addresses only, pinned, no redirects, a deadline) and is recorded with its time,
HTTP status or error, and latency.

Outcomes: 2xx delivered; 410 disables the URL for this key; 3xx, other 4xx, 5xx
and network errors are retried on `webhook_retry_schedule` (a terminal event only;
progress events are best effort), waiting at least `Retry-After` on 429 and 503.

One key's dead receiver cannot take the pool: a delivery is attempted only within its
key's limits (storage.database.webhook_queue); otherwise the task ends at once and the
delivery waits in the database for the dispatcher.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from storage.database.engine import session_scope, write_scope
from storage.database.jobs import get_job, utcnow
from storage.database.models import ApiKey, Job, WebhookDelivery
from storage.database.webhook_queue import RATE_WINDOW, DeliveryLimits, Lease, defer, lease_delivery, take_due
from storage.database.webhooks import (
    DELIVERED,
    DISABLED,
    FAILED,
    add_delivery,
    claim_terminal_event,
    disable_endpoint,
    is_disabled,
    jobs_awaiting_event,
    record_attempt,
    settle,
    signing_secrets,
)
from storage.egress.fetch import FetchError, FetchPolicy, fetch
from storage.egress.signing import signature_headers
from storage.logs import add_log_fields
from storage.wire import modelslab
from storage.wire.results import iso, metrics_of, output_links
from worker.ops.context import OpsContext

log = logging.getLogger(__name__)

RESPONSE_CAP_BYTES = 64 * 1024
MAX_RETRY_AFTER = timedelta(hours=24)
Publish = Callable[[str], None]


def compact(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def terminal_payload(ctx: OpsContext, job: Job, *, now: datetime) -> dict[str, Any]:
    """The body of job.completed / job.failed: what the result route says, plus track_id."""
    base_url = job.base_url or ctx.settings.public_url or ""
    return {
        "type": "job.completed" if job.status == "COMPLETED" else "job.failed",
        "timestamp": iso(now),
        "request_id": job.id,
        "track_id": job.track_id,
        "status": job.status,
        "model": job.model,
        "output": output_links(job, blobs=ctx.blobs, base_url=base_url, now=now),
        "error": job.error_message,
        "error_code": job.error_code,
        "seed": (job.output_seeds or [job.params.get("seed")])[0],
        "seeds": job.output_seeds or [],
        "metrics": metrics_of(job),
        "expires_at": iso(job.expires_at),
    }


def write_terminal_event(ctx: OpsContext, job_id: str) -> str | None:
    """Write the job's one terminal event if it is due; returns its delivery id.

    Jobs submitted in the ModelsLab format get that format's body; the signing is the same."""
    now = utcnow()
    with session_scope(ctx.sessions) as session:
        if not claim_terminal_event(session, job_id):
            return None
        job = get_job(session, job_id)
        assert job is not None
        payload = terminal_payload(ctx, job, now=now)
        event_type = payload["type"]
        if job.api_format == modelslab.FORMAT:
            payload = modelslab.webhook_body(job, payload["output"])
        return add_delivery(session, job=job, event_type=event_type, body=compact(payload), terminal=True, now=now).id


def write_progress_event(ctx: OpsContext, job_id: str, step: int, total: int) -> str | None:
    now = utcnow()
    with session_scope(ctx.sessions) as session:
        job = get_job(session, job_id)
    if job is None or job.webhook_url is None or job.status != "PROCESSING":
        return None
    payload = {
        "type": "job.progress",
        "timestamp": iso(now),
        "request_id": job.id,
        "track_id": job.track_id,
        "status": job.status,
        "progress": {"step": step, "total": total, "percent": round(100.0 * step / max(total, 1), 1)},
    }
    with session_scope(ctx.sessions) as session:  # its own transaction: it writes first (SQLite)
        return add_delivery(
            session, job=job, event_type="job.progress", body=compact(payload), terminal=False, now=now
        ).id


def lease_length(ctx: OpsContext) -> timedelta:
    """Longer than any one attempt can take (the fetch deadline plus its last read)."""
    return timedelta(seconds=2 * ctx.settings.webhook_timeout_seconds + 5)


def dispatch(ctx: OpsContext, publish: Publish, *, limit: int = 200) -> int:
    """The periodic safety net: write missing terminal events, nudge every due delivery."""
    with session_scope(ctx.sessions) as session:
        waiting = jobs_awaiting_event(session, limit=limit)
    for job_id in waiting:
        write_terminal_event(ctx, job_id)
    with session_scope(ctx.sessions) as session:
        due = take_due(
            session,
            now=utcnow(),
            redispatch_after=lease_length(ctx),
            limit=limit,
            per_key=ctx.settings.webhook_max_in_flight_per_key,
        )
    for delivery_id in due:
        publish(delivery_id)
    return len(due)


def delivery_limits(ctx: OpsContext) -> DeliveryLimits:
    return DeliveryLimits(
        in_flight_per_key=ctx.settings.webhook_max_in_flight_per_key,
        retries_per_minute=ctx.settings.webhook_retries_per_key_per_minute,
        in_flight_total=ctx.settings.webhook_max_in_flight,
    )


def attempt(ctx: OpsContext, delivery_id: str) -> str | None:
    """One delivery attempt, if the delivery is due, nobody else holds it and its key is within its limits.

    Returns the new status; None when nothing was sent (see hold_back)."""
    timeout = ctx.settings.webhook_timeout_seconds
    now = utcnow()
    with write_scope(ctx.sessions) as session:  # the lease reads the key's counts before it writes
        lease = lease_delivery(session, delivery_id, now=now, lease=lease_length(ctx), limits=delivery_limits(ctx))
        if lease != Lease.TAKEN:
            return hold_back(ctx, session, delivery_id, lease, now=now)
        delivery = session.get(WebhookDelivery, delivery_id)
        key = session.get(ApiKey, delivery.api_key_id) if delivery else None
        assert delivery is not None and key is not None
        job = session.get(Job, delivery.job_id)
        add_log_fields(request_id=delivery.job_id, track_id=job.track_id if job else None)
        if is_disabled(session, api_key_id=delivery.api_key_id, url=delivery.url):
            settle(session, delivery_id, status=DISABLED, now=utcnow())
            return DISABLED
        secrets = signing_secrets(key, now=utcnow())
        url, body, number, terminal = delivery.url, delivery.body.encode(), delivery.attempt_count, delivery.terminal
        api_key_id, job_id, event_type = delivery.api_key_id, delivery.job_id, delivery.event_type
    status_code, error, retry_after, elapsed = send(ctx, url, delivery_id, body, secrets, timeout)
    with session_scope(ctx.sessions) as session:  # writes first: a read first could not write on a busy SQLite
        record_attempt(
            session,
            delivery_id,
            number=number,
            at=utcnow(),
            status_code=status_code,
            error=error,
            latency_ms=elapsed * 1000,
        )
        outcome = decide(
            ctx.settings.webhook_retry_schedule,
            number=number,
            terminal=terminal,
            status_code=status_code,
            error=error,
            retry_after=retry_after,
        )
        if outcome == DISABLED:
            disable_endpoint(session, api_key_id=api_key_id, url=url, now=utcnow())
        if isinstance(outcome, timedelta):
            settle(session, delivery_id, status="pending", now=utcnow(), retry_at=utcnow() + outcome)
            log.info(
                "webhook attempt %d failed (%s); retry in %s",
                number,
                status_code or error,
                outcome,
                extra={"request_id": job_id},
            )
            return "pending"
        settle(session, delivery_id, status=outcome, now=utcnow())
        log.info("webhook %s %s after %d attempt(s)", event_type, outcome, number, extra={"request_id": job_id})
        return outcome


def hold_back(ctx: OpsContext, session: Session, delivery_id: str, lease: Lease, *, now: datetime) -> str | None:
    """A delivery refused its lease. Over the key's (or everyone's) in-flight limit it stays due for the dispatcher's
    next nudge, except a progress event, which is dropped (stale by then; best effort); over the retry
    rate it is put off by one retry's share of the window. Returns the new status, None if unchanged."""
    settings = ctx.settings
    if lease == Lease.RATE_LIMITED:
        defer(session, delivery_id, now=now, until=now + RATE_WINDOW / settings.webhook_retries_per_key_per_minute)
    elif lease in (Lease.KEY_BUSY, Lease.ALL_BUSY):
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is not None and not delivery.terminal:
            error = (
                f"not sent: {settings.webhook_max_in_flight_per_key} deliveries of this key were in flight"
                if lease == Lease.KEY_BUSY
                else f"not sent: {settings.webhook_max_in_flight} deliveries were in flight"
            )
            record_attempt(
                session,
                delivery_id,
                number=delivery.attempt_count + 1,
                at=now,
                status_code=None,
                error=error,
                latency_ms=0,
            )
            settle(session, delivery_id, status=FAILED, now=now)
            return FAILED
        defer(session, delivery_id, now=now)
    if lease != Lease.NOT_DUE:
        log.debug("webhook %s put off: %s", delivery_id, lease)
    return None


def send(
    ctx: OpsContext, url: str, msg_id: str, body: bytes, secrets: list[str], timeout: float
) -> tuple[int | None, str | None, timedelta | None, float]:
    """POST the signed body. Returns (status code, error, Retry-After, seconds taken)."""
    headers = signature_headers(secrets, msg_id, int(time.time()), body)
    headers["content-type"] = "application/json"
    policy = FetchPolicy(
        timeout=timeout,
        max_bytes=RESPONSE_CAP_BYTES,
        allow_loopback=ctx.settings.allow_loopback_urls,
        connect_timeout=ctx.settings.webhook_connect_timeout_seconds,
    )
    started = time.monotonic()
    try:
        result = fetch(url, policy, method="POST", content=body, headers=headers)
    except FetchError as exc:
        return None, exc.message, None, time.monotonic() - started
    return result.status_code, None, parse_retry_after(result.headers.get("retry-after")), result.elapsed


def decide(
    schedule: list[float],
    *,
    number: int,
    terminal: bool,
    status_code: int | None,
    error: str | None,
    retry_after: timedelta | None,
) -> str | timedelta:
    """delivered, disabled, failed, or how long to wait before the next attempt."""
    if status_code is not None and 200 <= status_code < 300:
        return DELIVERED
    if status_code == 410:
        return DISABLED
    if not terminal or number > len(schedule) or (error and "not public" in error):
        return FAILED
    wait = timedelta(seconds=schedule[number - 1])
    if status_code in (429, 503) and retry_after is not None:
        wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
    return wait


def parse_retry_after(value: str | None) -> timedelta | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(timedelta(0), when - utcnow()) if when.tzinfo else None
