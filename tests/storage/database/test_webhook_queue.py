"""Which webhook delivery goes out when, on SQLite and PostgreSQL: the dispatcher's per-key share,
the lease's per-key in-flight limit and retry rate, and putting a refused delivery off."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

import pytest

from storage.database.engine import make_engine, make_session_factory, session_scope, write_scope
from storage.database.jobs import create_job, utcnow
from storage.database.keys import create_key
from storage.database.migrate import upgrade
from storage.database.models import WebhookDelivery
from storage.database.webhook_queue import DeliveryLimits, Lease, defer, lease_delivery, take_due
from storage.database.webhooks import DELIVERED, add_delivery, record_attempt, settle
from tests.support.services import new_postgres_database

LEASE = timedelta(seconds=35)
LIMITS = DeliveryLimits(in_flight_per_key=2, retries_per_minute=0)


def new_key(db, name: str) -> int:
    return create_key(db, name=name, is_admin=False, now=utcnow()).record.id


def deliveries(db, key_id: int, count: int, *, now: datetime) -> list[str]:
    """`count` due terminal events of one key, the first one oldest."""
    ids = []
    for n in range(count):
        job = create_job(
            db,
            job_id=f"job-{uuid.uuid4().hex[:12]}",
            api_key_id=key_id,
            model="erase",
            queue="inpaint",
            params={"seed": 1},
            input_keys={},
            base64_output=False,
            now=now,
            webhook_url="http://127.0.0.1:9/hook",
        )
        at = now - timedelta(seconds=count - n)
        ids.append(add_delivery(db, job=job, event_type="job.completed", body="{}", terminal=True, now=at).id)
    return ids


def lease(db, delivery_id: str, now: datetime, limits: DeliveryLimits = LIMITS) -> Lease:
    return lease_delivery(db, delivery_id, now=now, lease=LEASE, limits=limits)


def fail_attempt(db, delivery_id: str, *, at: datetime) -> None:
    """Record the leased attempt as failed, due again at once."""
    number = db.get(WebhookDelivery, delivery_id, populate_existing=True).attempt_count
    record_attempt(db, delivery_id, number=number, at=at, status_code=500, error=None, latency_ms=1)
    settle(db, delivery_id, status="pending", now=at, retry_at=at)


def test_the_dispatcher_gives_each_key_only_its_free_slots(db) -> None:
    now = utcnow()
    noisy, quiet = new_key(db, "noisy"), new_key(db, "quiet")
    backlog = deliveries(db, noisy, 6, now=now)
    (other,) = deliveries(db, quiet, 1, now=now)
    due = take_due(db, now=now, redispatch_after=LEASE, limit=200, per_key=2)
    assert sorted(due) == sorted([*backlog[:2], other]), "the oldest two of the backlog, and the other key's"
    assert take_due(db, now=now, redispatch_after=LEASE, limit=200, per_key=2) == [], "both keys are busy"
    assert lease(db, backlog[0], now) is Lease.TAKEN
    settle(db, backlog[0], status=DELIVERED, now=now)
    assert take_due(db, now=now, redispatch_after=LEASE, limit=200, per_key=2) == [backlog[2]]


def test_a_lost_nudge_frees_its_slot_after_redispatch_after(db) -> None:
    now = utcnow()
    backlog = deliveries(db, new_key(db, "k"), 3, now=now)
    assert len(take_due(db, now=now, redispatch_after=LEASE, limit=200, per_key=2)) == 2
    later = now + LEASE + timedelta(seconds=1)
    assert sorted(take_due(db, now=later, redispatch_after=LEASE, limit=200, per_key=2)) == sorted(backlog[:2])


def test_a_key_at_its_in_flight_limit_is_refused_and_others_are_not(db) -> None:
    now = utcnow()
    first, second, third = deliveries(db, new_key(db, "busy"), 3, now=now)
    (other,) = deliveries(db, new_key(db, "other"), 1, now=now)
    assert lease(db, first, now) is Lease.TAKEN
    assert lease(db, second, now) is Lease.TAKEN
    assert lease(db, third, now) is Lease.KEY_BUSY
    assert db.get(WebhookDelivery, third, populate_existing=True).attempt_count == 0, "a refusal is no attempt"
    assert lease(db, other, now) is Lease.TAKEN
    assert lease(db, first, now) is Lease.NOT_DUE, "held by its own lease"
    settle(db, first, status=DELIVERED, now=now)
    assert lease(db, third, now) is Lease.TAKEN


def test_an_expired_lease_no_longer_counts(db) -> None:
    now = utcnow()
    first, second, third = deliveries(db, new_key(db, "k"), 3, now=now - 2 * LEASE)
    assert lease(db, first, now - LEASE - timedelta(seconds=1)) is Lease.TAKEN  # its worker died
    assert lease(db, second, now) is Lease.TAKEN
    assert lease(db, third, now) is Lease.TAKEN


def test_retries_are_rate_limited_per_key_but_first_attempts_are_not(db) -> None:
    now = utcnow()
    limits = DeliveryLimits(in_flight_per_key=10, retries_per_minute=2)
    noisy = new_key(db, "noisy")
    failing = deliveries(db, noisy, 4, now=now)
    for delivery_id in failing:
        assert lease(db, delivery_id, now, limits) is Lease.TAKEN
        fail_attempt(db, delivery_id, at=now)
    assert lease(db, failing[0], now, limits) is Lease.TAKEN  # retry 1, in flight
    fail_attempt(db, failing[0], at=now)
    assert lease(db, failing[1], now, limits) is Lease.TAKEN  # retry 2, still in flight
    assert lease(db, failing[2], now, limits) is Lease.RATE_LIMITED
    (fresh,) = deliveries(db, noisy, 1, now=now)
    assert lease(db, fresh, now, limits) is Lease.TAKEN, "a first attempt is not a retry"
    (elsewhere,) = deliveries(db, new_key(db, "quiet"), 1, now=now)
    assert lease(db, elsewhere, now, limits) is Lease.TAKEN
    fail_attempt(db, elsewhere, at=now)
    assert lease(db, elsewhere, now, limits) is Lease.TAKEN, "another key's retries have their own budget"
    a_minute_on = now + timedelta(seconds=61)
    fail_attempt(db, failing[1], at=now)
    assert lease(db, failing[2], a_minute_on, limits) is Lease.TAKEN


def test_defer_leaves_the_delivery_for_the_next_dispatch(db) -> None:
    now = utcnow()
    first, second, third = deliveries(db, new_key(db, "k"), 3, now=now)
    assert len(take_due(db, now=now, redispatch_after=LEASE, limit=200, per_key=3)) == 3
    defer(db, first, now=now)
    later = now + timedelta(seconds=5)
    defer(db, second, now=now, until=later)
    assert take_due(db, now=now, redispatch_after=LEASE, limit=200, per_key=3) == [first]
    assert take_due(db, now=later, redispatch_after=LEASE, limit=200, per_key=3) == [second]
    assert lease(db, third, now) is Lease.TAKEN
    defer(db, third, now=now, until=later)
    assert db.get(WebhookDelivery, third, populate_existing=True).next_attempt_at < later, "a held lease is kept"


@pytest.mark.parametrize("per_key", [1, 3])
def test_the_batch_limit_still_applies(db, per_key: int) -> None:
    now = utcnow()
    for name in ("a", "b", "c"):
        deliveries(db, new_key(db, name), 3, now=now)
    assert len(take_due(db, now=now, redispatch_after=LEASE, limit=4, per_key=per_key)) == min(4, 3 * per_key)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_workers_cannot_both_take_a_keys_last_slot(backend: str, request, tmp_path) -> None:
    """The second lease waits for the first one's transaction, then sees its slot taken."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_url"))
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        now = utcnow()
        with session_scope(sessions) as session:
            first, second, third = deliveries(session, new_key(session, "k"), 3, now=now)
        with write_scope(sessions) as session:
            assert lease(session, first, now) is Lease.TAKEN
        got: list[Lease] = []

        def other_worker() -> None:
            with write_scope(sessions) as session:
                got.append(lease(session, third, now))

        racer = threading.Thread(target=other_worker, daemon=True)
        with write_scope(sessions) as session:
            assert lease(session, second, now) is Lease.TAKEN  # the key's last slot, not committed yet
            racer.start()
            racer.join(timeout=0.5)
            assert got == [], "the other worker did not wait for this lease's transaction"
        racer.join(timeout=10)
        assert got == [Lease.KEY_BUSY]
    finally:
        engine.dispose()


def test_all_keys_together_stop_at_the_total_and_the_rest_wait(db) -> None:
    """A few keys' dead receivers cannot take every ops worker thread: the total caps them all."""
    now = utcnow()
    limits = DeliveryLimits(in_flight_per_key=2, retries_per_minute=0, in_flight_total=3)
    first, second = deliveries(db, new_key(db, "a"), 2, now=now), deliveries(db, new_key(db, "b"), 2, now=now)
    assert [lease(db, d, now, limits) for d in first] == [Lease.TAKEN, Lease.TAKEN]
    assert lease(db, second[0], now, limits) is Lease.TAKEN
    assert lease(db, second[1], now, limits) is Lease.ALL_BUSY, "the fourth in flight passes the total of 3"
    settle(db, first[0], status=DELIVERED, now=now)
    assert lease(db, second[1], now, limits) is Lease.TAKEN, "a slot freed: the waiting delivery goes"
