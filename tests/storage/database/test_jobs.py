"""The job state machine, on SQLite and PostgreSQL: conditional transitions, and illegal ones raise."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.database.jobs import (
    TRANSITIONS,
    beat_heartbeat,
    check_transition,
    claim_job,
    complete_job,
    count_jobs_ahead,
    create_job,
    fail_job,
    get_visible_job,
    record_progress,
    requeue_job,
    utcnow,
)
from storage.database.keys import create_key, find_key
from storage.database.models import Job, JobStatus
from storage.errors import IllegalTransition

TTL = timedelta(hours=1)


def new_job(db, key_id: int, job_id: str, *, offset: float = 0.0) -> Job:
    return create_job(
        db,
        job_id=job_id,
        api_key_id=key_id,
        model="erase",
        queue="inpaint",
        params={"seed": 1},
        input_keys={},
        base64_output=False,
        now=utcnow() + timedelta(seconds=offset),
    )


@pytest.fixture
def key_id(db) -> int:
    return create_key(db, name="t", is_admin=False, now=utcnow()).record.id


def status_of(db, job_id: str) -> str:
    db.expire_all()
    return db.get(Job, job_id).status


def test_claim_is_exclusive(db, key_id: int) -> None:
    new_job(db, key_id, "j1")
    assert claim_job(db, "j1", now=utcnow()) is True
    assert claim_job(db, "j1", now=utcnow()) is False, "a second claim must lose"
    db.expire_all()
    assert db.get(Job, "j1").attempts == 1
    assert claim_job(db, "unknown", now=utcnow()) is False


def test_complete_then_nothing_moves_it(db, key_id: int) -> None:
    new_job(db, key_id, "j2")
    claim_job(db, "j2", now=utcnow())
    assert record_progress(db, "j2", attempt=1, step=3, total=10)
    assert complete_job(
        db, "j2", attempt=1, output_keys=["k"], output_seeds=[1], inference_time=0.5, now=utcnow(), ttl=TTL
    )
    assert status_of(db, "j2") == "COMPLETED"
    assert not complete_job(
        db, "j2", attempt=1, output_keys=["k"], output_seeds=[1], inference_time=0.5, now=utcnow(), ttl=TTL
    )
    assert not fail_job(db, "j2", code="x", message="y", now=utcnow(), ttl=TTL)
    assert not record_progress(db, "j2", attempt=1, step=1, total=10), "progress of a finished job moved"
    assert status_of(db, "j2") == "COMPLETED"


def test_complete_needs_processing_and_output(db, key_id: int) -> None:
    new_job(db, key_id, "j3")
    assert not complete_job(
        db, "j3", attempt=0, output_keys=["k"], output_seeds=[1], inference_time=0.1, now=utcnow(), ttl=TTL
    ), "a QUEUED job cannot complete"
    claim_job(db, "j3", now=utcnow())
    with pytest.raises(IllegalTransition):
        complete_job(db, "j3", attempt=1, output_keys=[], output_seeds=[], inference_time=0.1, now=utcnow(), ttl=TTL)


def test_only_the_current_attempt_may_finish(db, key_id: int) -> None:
    new_job(db, key_id, "j5")
    claim_job(db, "j5", now=utcnow())
    assert requeue_job(db, "j5", attempt=1, now=utcnow())
    assert claim_job(db, "j5", now=utcnow()), "a requeued job can be claimed again"
    assert not record_progress(db, "j5", attempt=1, step=1, total=2), "the lost attempt must notice"
    assert not beat_heartbeat(db, "j5", attempt=1, now=utcnow())
    assert not complete_job(
        db, "j5", attempt=1, output_keys=["a"], output_seeds=[1], inference_time=1, now=utcnow(), ttl=TTL
    ), "the lost attempt completed the job"
    assert complete_job(
        db, "j5", attempt=2, output_keys=["b"], output_seeds=[1], inference_time=1, now=utcnow(), ttl=TTL
    )
    db.expire_all()
    assert db.get(Job, "j5").output_keys == ["b"]


def test_graceful_requeue_refunds_the_attempt(db, key_id: int) -> None:
    new_job(db, key_id, "j6")
    claim_job(db, "j6", now=utcnow())
    assert requeue_job(db, "j6", attempt=1, now=utcnow(), refund=True)
    db.expire_all()
    assert (db.get(Job, "j6").status, db.get(Job, "j6").attempts) == ("QUEUED", 0)


def test_fail_sets_expiry_and_error(db, key_id: int) -> None:
    new_job(db, key_id, "j4")
    now = utcnow()
    assert fail_job(db, "j4", code="bad", message="it broke", now=now, ttl=TTL)
    db.expire_all()
    job = db.get(Job, "j4")
    assert (job.status, job.error_code, job.error_message) == ("FAILED", "bad", "it broke")
    assert job.expires_at == now + TTL


def test_illegal_edges_raise() -> None:
    for src, allowed in TRANSITIONS.items():
        for dst in JobStatus:
            if dst in allowed:
                check_transition(src, dst)
            else:
                with pytest.raises(IllegalTransition):
                    check_transition(src, dst)
    assert not TRANSITIONS[JobStatus.COMPLETED] and not TRANSITIONS[JobStatus.FAILED]


def test_queue_position_counts_jobs_ahead(db, key_id: int) -> None:
    jobs = [new_job(db, key_id, f"q{i}", offset=i) for i in range(4)]
    assert [count_jobs_ahead(db, j) for j in jobs] == [0, 1, 2, 3]
    claim_job(db, "q0", now=utcnow())
    db.expire_all()
    assert count_jobs_ahead(db, db.get(Job, "q3")) == 2


def test_visibility_is_per_key_and_ends_at_expiry(db, key_id: int) -> None:
    other = create_key(db, name="other", is_admin=False, now=utcnow()).record.id
    new_job(db, key_id, "v1")
    now = utcnow()
    assert get_visible_job(db, "v1", api_key_id=key_id, now=now) is not None
    assert get_visible_job(db, "v1", api_key_id=other, now=now) is None
    fail_job(db, "v1", code="x", message="y", now=now, ttl=TTL)
    assert get_visible_job(db, "v1", api_key_id=key_id, now=now + TTL + timedelta(seconds=1)) is None


def test_keys_are_stored_hashed(db) -> None:
    new = create_key(db, name="k", is_admin=True, now=utcnow())
    assert new.secret not in (new.record.key_hash, new.record.prefix)
    assert len(new.record.key_hash) == 64
    assert find_key(db, new.secret).id == new.record.id
    assert find_key(db, new.secret + "x") is None
