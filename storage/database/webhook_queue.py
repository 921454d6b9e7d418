"""Which webhook delivery is attempted when, and the limits that keep keys apart.

The dispatcher takes due deliveries (`take_due`) and publishes a nudge for each; a
nudge, or the task that wrote the event, asks for the row's lease (`lease_delivery`)
and attempts it only if it got one. A lease ends with `settle` (webhooks.py).

Fairness between keys (DeliveryLimits): a key has at most `in_flight_per_key`
deliveries leased at once, and starts at most `retries_per_minute` retries a minute;
all keys together at most `in_flight_total`, so that dead receivers of a few keys never
take every ops worker thread from the dispatcher and the maintenance tasks. A lease that
would pass a limit is refused (`Lease.KEY_BUSY`, `Lease.ALL_BUSY`, `Lease.RATE_LIMITED`)
before anything is sent, so a refused delivery holds no thread and no lease; `defer`
leaves it for the dispatcher, which nudges no more of a key's deliveries than the key
has free slots. A lost nudge holds its key's slot until `redispatch_after` passes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from storage.database.models import ApiKey, WebhookAttempt, WebhookDelivery
from storage.database.webhooks import PENDING

RATE_WINDOW = timedelta(minutes=1)


class Lease(enum.StrEnum):
    """What asking for a delivery's lease got."""

    TAKEN = "taken"
    NOT_DUE = "not_due"
    """Settled, not due yet, or another attempt holds it."""
    KEY_BUSY = "key_busy"
    """The key has `in_flight_per_key` deliveries leased already."""
    ALL_BUSY = "all_busy"
    """All keys together have `in_flight_total` deliveries leased already."""
    RATE_LIMITED = "rate_limited"
    """A retry, and the key started `retries_per_minute` retries within RATE_WINDOW."""


@dataclass(frozen=True)
class DeliveryLimits:
    in_flight_per_key: int
    retries_per_minute: int
    """0: no limit."""
    in_flight_total: int = 0
    """0: no limit. Counted without a lock: two workers may pass it by one each at the same instant."""


def _unleased(now: datetime) -> Any:
    return or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now)


def take_due(session: Session, *, now: datetime, redispatch_after: timedelta, limit: int, per_key: int) -> list[str]:
    """Due deliveries not nudged recently, marked nudged in one statement; the caller publishes a task each.

    A key gets at most `per_key` minus its busy deliveries (leased, or nudged within
    `redispatch_after`), oldest first, so one key's backlog never fills the batch."""
    busy = (
        select(WebhookDelivery.api_key_id, func.count().label("n"))
        .where(
            WebhookDelivery.status == PENDING,
            or_(WebhookDelivery.lease_until >= now, WebhookDelivery.dispatched_at >= now - redispatch_after),
        )
        .group_by(WebhookDelivery.api_key_id)
        .subquery()
    )
    rank = func.row_number().over(
        partition_by=WebhookDelivery.api_key_id, order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    )
    ready = (
        select(WebhookDelivery.id, WebhookDelivery.api_key_id, WebhookDelivery.next_attempt_at, rank.label("rank"))
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            _unleased(now),
            or_(WebhookDelivery.dispatched_at.is_(None), WebhookDelivery.dispatched_at < now - redispatch_after),
        )
        .subquery()
    )
    due = (
        select(ready.c.id)
        .outerjoin(busy, busy.c.api_key_id == ready.c.api_key_id)
        .where(ready.c.rank <= per_key - func.coalesce(busy.c.n, 0))
        .order_by(ready.c.next_attempt_at)
        .limit(limit)
        .scalar_subquery()
    )
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due))
        .values(dispatched_at=now)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.execute(stmt).scalars())


def lease_delivery(
    session: Session, delivery_id: str, *, now: datetime, lease: timedelta, limits: DeliveryLimits
) -> Lease:
    """Take the right to attempt this delivery now, within its key's limits.

    Reads before it writes: open the session with write_scope. The key's row is locked
    before anything is read, so every lease of a key is decided one at a time: two workers
    cannot both take its last free slot, nor lease a row another just refused (PostgreSQL;
    SQLite's BEGIN IMMEDIATE already runs one writer at a time)."""
    api_key_id = session.execute(
        select(WebhookDelivery.api_key_id).where(WebhookDelivery.id == delivery_id)
    ).scalar_one_or_none()
    if api_key_id is None:
        return Lease.NOT_DUE
    session.execute(select(ApiKey.id).where(ApiKey.id == api_key_id).with_for_update(key_share=True))
    attempts_so_far = session.execute(
        select(WebhookDelivery.attempt_count).where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            _unleased(now),
        )
    ).scalar_one_or_none()
    if attempts_so_far is None:
        return Lease.NOT_DUE
    if count_in_flight(session, api_key_id, now=now) >= limits.in_flight_per_key:
        return Lease.KEY_BUSY
    if limits.in_flight_total and count_in_flight(session, None, now=now) >= limits.in_flight_total:
        return Lease.ALL_BUSY
    if attempts_so_far and limits.retries_per_minute:
        if count_recent_retries(session, api_key_id, now=now) >= limits.retries_per_minute:
            return Lease.RATE_LIMITED
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            _unleased(now),
        )
        .values(lease_until=now + lease, attempt_count=WebhookDelivery.attempt_count + 1)
        .execution_options(synchronize_session=False)
    )
    return Lease.TAKEN if result.rowcount else Lease.NOT_DUE  # type: ignore[attr-defined]


def count_in_flight(session: Session, api_key_id: int | None, *, now: datetime) -> int:
    """The key's deliveries leased now; every key's for None."""
    stmt = select(func.count()).where(WebhookDelivery.status == PENDING, WebhookDelivery.lease_until >= now)
    if api_key_id is not None:
        stmt = stmt.where(WebhookDelivery.api_key_id == api_key_id)
    return int(session.execute(stmt).scalar_one())


def count_recent_retries(session: Session, api_key_id: int, *, now: datetime) -> int:
    """Retries (attempts after the first) of the key recorded within RATE_WINDOW, plus those leased now."""
    recorded = (
        select(func.count())
        .select_from(WebhookAttempt)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .where(
            WebhookDelivery.api_key_id == api_key_id,
            WebhookAttempt.number > 1,
            WebhookAttempt.attempted_at >= now - RATE_WINDOW,
        )
    )
    running = select(func.count()).where(
        WebhookDelivery.api_key_id == api_key_id,
        WebhookDelivery.status == PENDING,
        WebhookDelivery.lease_until >= now,
        WebhookDelivery.attempt_count > 1,
    )
    return int(session.execute(recorded).scalar_one()) + int(session.execute(running).scalar_one())


def defer(session: Session, delivery_id: str, *, now: datetime, until: datetime | None = None) -> None:
    """Leave a delivery whose lease was refused for a later nudge: due again at `until`, or still due now."""
    values: dict[str, Any] = {"dispatched_at": None}
    if until is not None:
        values["next_attempt_at"] = until
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING, _unleased(now))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
