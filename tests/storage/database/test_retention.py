"""Record retention (storage.database.retention), on SQLite and PostgreSQL: old ended jobs go with
every row that refers to them, in short batched transactions; young jobs and QUEUED or PROCESSING
ones stay whatever their age; no row is left pointing at a purged one; /metrics' aggregates stay."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from storage.database.batches import create_batch
from storage.database.idempotency import reserve
from storage.database.jobs import create_job, utcnow
from storage.database.keys import create_key
from storage.database.models import (
    Batch,
    IdempotencyKey,
    Job,
    JobNumber,
    JobStatus,
    WebhookAttempt,
    WebhookDelivery,
)
from storage.database.retention import PurgeReport, purge_old_records
from storage.database.stats import (
    RETENTION_PURGED_JOBS,
    count_deliveries,
    count_jobs,
    purged_delivery_counts,
    purged_job_counts,
    read_counts,
)
from storage.database.webhooks import DELIVERED, PENDING, add_delivery, record_attempt, settle

NOW = utcnow()
PERIOD = timedelta(days=30)
OLD = NOW - timedelta(days=40)
YOUNG = NOW - timedelta(days=5)


@pytest.fixture
def sessions(db: Session) -> sessionmaker[Session]:
    """Sessions on the test's connection: each commit ends a SAVEPOINT; the test's rollback undoes all."""
    return sessionmaker(bind=db.connection(), join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def key_id(db: Session) -> int:
    return create_key(db, name=f"retention-{uuid.uuid4().hex[:8]}", is_admin=False, now=OLD).record.id


def make_job(
    db: Session,
    key_id: int,
    status: JobStatus,
    *,
    created: datetime,
    finished: datetime | None = None,
    error_code: str | None = None,
    webhook: bool = False,
    batch_id: str | None = None,
) -> str:
    job_id = f"ret-{uuid.uuid4().hex[:16]}"
    create_job(
        db,
        job_id=job_id,
        api_key_id=key_id,
        model="retention-model",
        queue="inpaint",
        params={"seed": 1, "prompt": "kept 30 days"},
        input_keys={},
        base64_output=False,
        now=created,
        webhook_url="http://127.0.0.1:9/hook" if webhook else None,
        batch_id=batch_id,
    )
    # Test data: put the row straight into its state (the transitions are test_jobs.py's).
    db.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=status.value, finished_at=finished, error_code=error_code)
        .execution_options(synchronize_session=False)
    )
    return job_id


def add_event(db: Session, job_id: str, *, at: datetime, status: str = DELIVERED, attempts: int = 2) -> str:
    job = db.get(Job, job_id, populate_existing=True)
    delivery = add_delivery(db, job=job, event_type="job.completed", body="{}", terminal=True, now=at)
    for number in range(1, attempts + 1):
        record_attempt(db, delivery.id, number=number, at=at, status_code=200, error=None, latency_ms=3)
    if status != PENDING:
        settle(db, delivery.id, status=status, now=at)
    return delivery.id


def remaining_jobs(db: Session, ids: list[str]) -> set[str]:
    return set(db.execute(select(Job.id).where(Job.id.in_(ids))).scalars())


def assert_no_orphans(db: Session) -> None:
    has_job = exists().where(Job.id == WebhookDelivery.job_id)
    has_delivery = exists().where(WebhookDelivery.id == WebhookAttempt.delivery_id)
    numbered = exists().where(Job.id == JobNumber.job_id)
    assert db.execute(select(func.count()).select_from(WebhookDelivery).where(~has_job)).scalar_one() == 0
    assert db.execute(select(func.count()).select_from(WebhookAttempt).where(~has_delivery)).scalar_one() == 0
    assert db.execute(select(func.count()).select_from(JobNumber).where(~numbered)).scalar_one() == 0


def aggregates(db: Session) -> tuple[Counter[tuple[str, str, str | None]], Counter[str]]:
    """What /metrics' counters add up: job rows plus tallies of purged jobs, and ended webhook events."""
    counters = read_counts(db)
    jobs: Counter[tuple[str, str, str | None]] = Counter()
    for row in [*count_jobs(db), *purged_job_counts(counters)]:
        if row.model == "retention-model":
            jobs[(row.model, row.status, row.error_code)] += row.count
    events: Counter[str] = Counter(purged_delivery_counts(counters))
    for (status, _), n in count_deliveries(db).items():
        events[status] += n
    return jobs, events


def test_old_ended_jobs_go_with_their_dependents(db: Session, sessions: sessionmaker[Session], key_id: int) -> None:
    old_batch = create_batch(db, batch_id=str(uuid.uuid4()), api_key_id=key_id, now=OLD).id
    rejected_only = create_batch(db, batch_id=str(uuid.uuid4()), api_key_id=key_id, now=OLD).id
    done = make_job(db, key_id, JobStatus.COMPLETED, created=OLD, finished=OLD, webhook=True, batch_id=old_batch)
    done_event = add_event(db, done, at=OLD + timedelta(seconds=1))
    reserve(db, api_key_id=key_id, key=f"idem-{done}", digest="d" * 64, result_id=done, now=OLD)
    reserve(db, api_key_id=key_id, key=f"idem-{old_batch}", digest="b" * 64, result_id=old_batch, now=OLD)
    failed = make_job(db, key_id, JobStatus.FAILED, created=OLD, finished=OLD, error_code="timeout")
    young = make_job(db, key_id, JobStatus.COMPLETED, created=YOUNG, finished=YOUNG, webhook=True)
    young_event = add_event(db, young, at=YOUNG)
    reserve(db, api_key_id=key_id, key=f"idem-{young}", digest="y" * 64, result_id=young, now=YOUNG)
    queued = make_job(db, key_id, JobStatus.QUEUED, created=OLD - timedelta(days=400))
    running = make_job(db, key_id, JobStatus.PROCESSING, created=OLD - timedelta(days=400))
    live_batch = create_batch(db, batch_id=str(uuid.uuid4()), api_key_id=key_id, now=OLD).id
    in_live_batch = make_job(db, key_id, JobStatus.QUEUED, created=OLD, batch_id=live_batch)
    in_flight = make_job(db, key_id, JobStatus.COMPLETED, created=OLD, finished=OLD, webhook=True)
    add_event(db, in_flight, at=OLD, status=PENDING, attempts=0)
    db.execute(update(WebhookDelivery).where(WebhookDelivery.job_id == in_flight).values(lease_until=NOW + PERIOD))
    db.flush()
    ours = [done, failed, young, queued, running, in_live_batch, in_flight]
    before = aggregates(db)
    purged_before = read_counts(db).get(RETENTION_PURGED_JOBS, 0)

    report = purge_old_records(sessions, now=NOW, older_than=PERIOD, batch=500)

    db.expire_all()
    assert remaining_jobs(db, ours) == {young, queued, running, in_live_batch, in_flight}
    assert report.jobs == 2 and report.job_numbers == 2 and report.job_transactions == 1
    assert report.webhook_deliveries == 1 and report.webhook_attempts == 2
    assert report.idempotency_keys == 2 and report.batches == 2
    assert db.get(WebhookDelivery, done_event) is None, "the purged job's webhook event is still there"
    assert db.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id == done_event)).first() is None
    assert db.get(WebhookDelivery, young_event) is not None
    assert db.execute(select(JobNumber).where(JobNumber.job_id.in_([done, failed]))).first() is None
    keys = set(db.execute(select(IdempotencyKey.result_id).where(IdempotencyKey.api_key_id == key_id)).scalars())
    assert keys == {young}
    assert db.get(Batch, old_batch) is None and db.get(Batch, rejected_only) is None
    assert db.get(Batch, live_batch) is not None, "a batch with a job left was purged"
    assert_no_orphans(db)
    assert aggregates(db) == before, "the metrics' aggregates changed"
    assert read_counts(db)[RETENTION_PURGED_JOBS] == purged_before + 2


def test_never_deletes_queued_or_processing_jobs(db: Session, sessions: sessionmaker[Session], key_id: int) -> None:
    ancient = OLD - timedelta(days=3650)
    ids = [
        make_job(db, key_id, JobStatus.QUEUED, created=ancient),
        make_job(db, key_id, JobStatus.PROCESSING, created=ancient, finished=ancient),
    ]
    db.execute(update(Job).where(Job.id.in_(ids)).values(expired_at=ancient, expires_at=ancient))
    db.flush()

    report = purge_old_records(sessions, now=NOW, older_than=timedelta(days=1), batch=1)

    db.expire_all()
    assert remaining_jobs(db, ids) == set(ids)
    assert report.jobs == 0


def test_batches_of_two_purge_five_jobs_in_three_transactions(
    db: Session, sessions: sessionmaker[Session], key_id: int
) -> None:
    ids = [make_job(db, key_id, JobStatus.COMPLETED, created=OLD, finished=OLD, webhook=True) for _ in range(5)]
    events = [add_event(db, job_id, at=OLD) for job_id in ids]
    db.flush()
    opened = 0

    def counting() -> Session:
        nonlocal opened
        opened += 1
        return sessions()

    report = purge_old_records(counting, now=NOW, older_than=PERIOD, batch=2)  # type: ignore[arg-type]

    db.expire_all()
    assert report.jobs == 5 and report.job_transactions == 3
    assert report.webhook_deliveries == 5 and report.webhook_attempts == 10
    assert remaining_jobs(db, ids) == set()
    assert db.execute(select(WebhookDelivery).where(WebhookDelivery.id.in_(events))).first() is None
    assert opened == 3 + 3, "three transactions for the jobs, one each for keys, batches and orphan events"
    assert_no_orphans(db)


def test_a_call_stops_after_max_batches(db: Session, sessions: sessionmaker[Session], key_id: int) -> None:
    ids = [make_job(db, key_id, JobStatus.FAILED, created=OLD, finished=OLD) for _ in range(5)]
    db.flush()

    first = purge_old_records(sessions, now=NOW, older_than=PERIOD, batch=2, max_batches=1)
    db.expire_all()
    assert first.jobs == 2 and len(remaining_jobs(db, ids)) == 3, "one transaction deletes at most `batch` jobs"

    rest = purge_old_records(sessions, now=NOW, older_than=PERIOD, batch=2)
    db.expire_all()
    assert rest.jobs == 3 and remaining_jobs(db, ids) == set()


def test_reaper_purges_with_the_setting(
    db: Session, sessions: sessionmaker[Session], key_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper task calls worker.ops.retention.purge_records with INPAINT_RECORD_RETENTION_DAYS,
    after its other steps; purge_records purges what is older than that many days."""
    from worker.ops import retention as ops_retention
    from worker.tasks import maintenance

    old = make_job(db, key_id, JobStatus.COMPLETED, created=NOW - timedelta(days=8), finished=NOW - timedelta(days=8))
    kept = make_job(db, key_id, JobStatus.COMPLETED, created=NOW - timedelta(days=6), finished=NOW - timedelta(days=6))
    db.flush()

    report = ops_retention.purge_records(sessions, now=NOW, retention_days=7)
    db.expire_all()
    assert isinstance(report, PurgeReport) and report.jobs == 1
    assert remaining_jobs(db, [old, kept]) == {kept}

    calls: list[str] = []
    ops = SimpleNamespace(
        sessions=sessions, blobs=object(), settings=SimpleNamespace(upload_ttl_seconds=3600, record_retention_days=7)
    )
    monkeypatch.setattr(maintenance, "current", lambda: SimpleNamespace(ops=ops))
    monkeypatch.setattr(maintenance, "reap_uploads", lambda *a, **k: calls.append("uploads"))
    monkeypatch.setattr(maintenance, "reap_checks", lambda *a, **k: calls.append("checks"))
    monkeypatch.setattr(maintenance, "reap_expired", lambda *a, **k: calls.append("expired") or 4)

    def purge(given: Any, *, now: datetime, retention_days: int) -> PurgeReport:
        assert given is sessions and retention_days == 7
        calls.append("purge")
        return PurgeReport()

    monkeypatch.setattr(maintenance, "purge_records", purge)
    assert maintenance.reap() == 4
    assert calls == ["uploads", "checks", "expired", "purge"]


def test_setting_defaults_to_thirty_days() -> None:
    from storage.settings import Settings

    field = Settings.model_fields["record_retention_days"]
    assert field.default == 30
    with pytest.raises(ValueError):
        Settings(record_retention_days=0)  # type: ignore[call-arg]


def test_tallies_fit_the_longest_labels(db: Session, sessions: sessionmaker[Session], key_id: int) -> None:
    """A 100-character model slug and a 40-character error code make a counter name of 170 characters."""
    job_id = make_job(db, key_id, JobStatus.FAILED, created=OLD, finished=OLD, error_code="e" * 40)
    db.execute(update(Job).where(Job.id == job_id).values(model="m" * 100))
    db.flush()

    assert purge_old_records(sessions, now=NOW, older_than=PERIOD).jobs == 1

    tallies = [row for row in purged_job_counts(read_counts(db)) if row.model == "m" * 100]
    assert [(row.status, row.error_code, row.count) for row in tallies] == [("FAILED", "e" * 40, 1)]
