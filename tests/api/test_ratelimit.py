"""Token buckets, in the database (SQLite and PostgreSQL) and in Redis: refill, cap, atomicity."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from api.ratelimit import DatabaseBuckets, Rate, RedisBuckets, rate_of
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.keys import KeyLimits, create_key
from storage.database.migrate import upgrade
from storage.settings import load_settings
from tests.support.services import new_postgres_database

ONE_A_SECOND_TWO_AT_ONCE = Rate(per_minute=60, burst=2)


@pytest.fixture(params=["sqlite", "postgres"])
def buckets(request: pytest.FixtureRequest, tmp_path, services: dict[str, str]) -> Any:
    """(DatabaseBuckets, key id) on a fresh database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'buckets.db'}"
    else:
        url = new_postgres_database(services["INPAINT_TEST_POSTGRES_URL"])
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        key_id = create_key(session, name="bucket", is_admin=False, now=utcnow()).record.id
    yield DatabaseBuckets(sessions), key_id
    engine.dispose()


def test_database_bucket_refills_at_the_rate_and_caps_at_the_burst(buckets: Any) -> None:
    limiter, key_id = buckets
    rate = ONE_A_SECOND_TWO_AT_ONCE
    assert limiter.take(key_id, rate, now=1000.0) == 0
    assert limiter.take(key_id, rate, now=1000.0) == 0
    assert limiter.take(key_id, rate, now=1000.0) == pytest.approx(1.0)
    assert limiter.take(key_id, rate, now=1000.5) == pytest.approx(0.5)
    assert limiter.take(key_id, rate, now=1001.0) == 0
    # an hour later the bucket holds `burst` tokens, not 3600
    assert [limiter.take(key_id, rate, now=4600.0) for _ in range(3)][-1] == pytest.approx(1.0)


def test_database_bucket_gives_the_last_tokens_to_exactly_burst_racers(buckets: Any) -> None:
    limiter, key_id = buckets
    rate = Rate(per_minute=1, burst=5)
    with ThreadPoolExecutor(max_workers=10) as pool:
        waits = list(pool.map(lambda _: limiter.take(key_id, rate, now=50.0), range(20)))
    assert sum(1 for w in waits if w == 0) == 5, waits


@pytest.fixture
def redis_buckets(services: dict[str, str]) -> Any:
    limiter = RedisBuckets(services["INPAINT_TEST_REDIS_URL"] + "/0")
    yield limiter
    limiter.close()


def test_redis_bucket_takes_refills_and_is_atomic(redis_buckets: RedisBuckets) -> None:
    key_id = uuid.uuid4().int % 10**9
    rate = Rate(per_minute=1, burst=5)
    with ThreadPoolExecutor(max_workers=10) as pool:
        waits = list(pool.map(lambda _: redis_buckets.take(key_id, rate), range(20)))
    assert sum(1 for w in waits if w == 0) == 5, waits
    assert all(0 < w <= 60 for w in waits if w), waits
    ttl = redis_buckets.client.pttl(f"inpaint:bucket:{key_id}")
    assert 0 < ttl <= (5 * 60 + 1) * 1000, "the bucket must expire once it would be full again"


def test_redis_bucket_refills(redis_buckets: RedisBuckets) -> None:
    import time

    key_id = uuid.uuid4().int % 10**9
    rate = Rate(per_minute=600, burst=1)  # one token every 0.1 s
    assert redis_buckets.take(key_id, rate) == 0
    wait = redis_buckets.take(key_id, rate)
    assert 0 < wait <= 0.1
    time.sleep(wait + 0.2)
    assert redis_buckets.take(key_id, rate) == 0


def test_unreachable_redis_lets_the_request_through() -> None:
    limiter = RedisBuckets("redis://127.0.0.1:1/0")
    assert limiter.take(1, ONE_A_SECOND_TWO_AT_ONCE) == 0


def test_a_keys_own_rate_wins_over_the_default(tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path, rate_limit_per_minute=120, rate_limit_burst=7)
    from storage.database.models import ApiKey

    def key(**limits: Any) -> ApiKey:
        return ApiKey(**{**vars(KeyLimits()), **limits})

    assert rate_of(key(), settings) == Rate(per_minute=120, burst=7)
    assert rate_of(key(rate_limit_per_minute=6, rate_limit_burst=2), settings) == Rate(per_minute=6, burst=2)
    assert rate_of(key(rate_limit_per_minute=0), settings) is None
    assert rate_of(key(), load_settings(data_dir=tmp_path, rate_limit_per_minute=0)) is None


def test_redis_is_the_brokers_when_it_is_redis(tmp_path) -> None:
    assert load_settings(data_dir=tmp_path).resolved_redis_url is None
    assert load_settings(data_dir=tmp_path, broker_url="redis://h:6379/2").resolved_redis_url == "redis://h:6379/2"
    both = load_settings(data_dir=tmp_path, broker_url="redis://h/2", redis_url="redis://r/5")
    assert both.resolved_redis_url == "redis://r/5"
