"""Webhook events and their delivery attempts, in the database.

The database, not the broker, holds every event and its schedule: a delivery
task is only a nudge. If a task is lost (a broker restart, a killed worker), the
periodic dispatcher finds the event due again and sends another nudge; a lease
on the row makes duplicate nudges harmless.

Delivery status: pending → delivered | failed | disabled. A job's `webhook_state`
goes pending → created when its terminal event is written.

Which delivery goes out when (take_due, leases, per-key limits): webhook_queue.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.database.models import ApiKey, DisabledEndpoint, Job, JobStatus, WebhookAttempt, WebhookDelivery
from storage.egress.signing import generate_secret, new_message_id

PENDING, DELIVERED, FAILED, DISABLED = "pending", "delivered", "failed", "disabled"
TERMINAL_JOB_STATES = [JobStatus.COMPLETED.value, JobStatus.FAILED.value]


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def jobs_awaiting_event(session: Session, *, limit: int) -> list[str]:
    """Jobs that ended and whose terminal event is not written yet."""
    stmt = select(Job.id).where(Job.webhook_state == PENDING, Job.status.in_(TERMINAL_JOB_STATES)).limit(limit)
    return list(session.execute(stmt).scalars())


def claim_terminal_event(session: Session, job_id: str) -> bool:
    """pending → created for a finished job. Exactly one caller wins, so one event is written."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.webhook_state == PENDING, Job.status.in_(TERMINAL_JOB_STATES))
        .values(webhook_state="created")
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def add_delivery(
    session: Session, *, job: Job, event_type: str, body: str, terminal: bool, now: datetime
) -> WebhookDelivery:
    assert job.webhook_url is not None
    delivery = WebhookDelivery(
        id=new_message_id(),
        job_id=job.id,
        api_key_id=job.api_key_id,
        url=job.webhook_url,
        event_type=event_type,
        body=body,
        terminal=terminal,
        status=PENDING,
        attempt_count=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery


def record_attempt(
    session: Session,
    delivery_id: str,
    *,
    number: int,
    at: datetime,
    status_code: int | None,
    error: str | None,
    latency_ms: float,
) -> None:
    """Insert the attempt at once: it is the transaction's first statement (SQLite's write-first rule)."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery_id,
            number=number,
            attempted_at=at,
            status_code=status_code,
            error=error,
            latency_ms=round(latency_ms, 1),
        )
    )
    session.flush()


def settle(session: Session, delivery_id: str, *, status: str, now: datetime, retry_at: datetime | None = None) -> None:
    """End an attempt: finished with `status`, or back to pending until `retry_at`."""
    values: dict[str, Any] = {"lease_until": None, "dispatched_at": None}
    if retry_at is not None:
        values.update(status=PENDING, next_attempt_at=retry_at)
    else:
        values.update(status=status, finished_at=now)
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def is_disabled(session: Session, *, api_key_id: int, url: str) -> bool:
    return session.get(DisabledEndpoint, (api_key_id, _url_hash(url))) is not None


def disable_endpoint(session: Session, *, api_key_id: int, url: str, now: datetime) -> None:
    if not is_disabled(session, api_key_id=api_key_id, url=url):
        session.add(DisabledEndpoint(api_key_id=api_key_id, url_hash=_url_hash(url), url=url, disabled_at=now))


def list_deliveries(session: Session, job_id: str) -> list[DeliveryView]:
    deliveries = session.execute(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at)
    ).scalars()
    views = []
    for delivery in deliveries:
        attempts = session.execute(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id).order_by(WebhookAttempt.id)
        ).scalars()
        views.append(DeliveryView(delivery, list(attempts)))
    return views


def reopen_terminal_delivery(session: Session, job: Job, *, now: datetime) -> WebhookDelivery | None:
    """Send the terminal event again, same webhook-id and body. Re-enables a URL disabled by a 410."""
    session.execute(
        delete(DisabledEndpoint).where(
            DisabledEndpoint.api_key_id == job.api_key_id, DisabledEndpoint.url_hash == _url_hash(job.webhook_url or "")
        )
    )
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.job_id == job.id, WebhookDelivery.terminal.is_(True))
        .values(status=PENDING, next_attempt_at=now, lease_until=None, dispatched_at=None, finished_at=None)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return session.execute(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job.id, WebhookDelivery.terminal.is_(True))
    ).scalar_one()


def signing_secrets(key: ApiKey, *, now: datetime) -> list[str]:
    """The current secret, and the previous one while a rotation's overlap lasts."""
    valid = [key.webhook_secret]
    if key.webhook_secret_previous and key.webhook_secret_previous_until and key.webhook_secret_previous_until > now:
        valid.append(key.webhook_secret_previous)
    return valid


def rotate_secret(session: Session, key: ApiKey, *, now: datetime, overlap: timedelta) -> str:
    """A new current secret; the old one keeps signing for `overlap`. Returns the new secret."""
    key.webhook_secret_previous = key.webhook_secret
    key.webhook_secret_previous_until = now + overlap
    key.webhook_secret = generate_secret()
    session.flush()
    return key.webhook_secret
