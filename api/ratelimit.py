"""Per-key rate limits: a token bucket per key, taken atomically.

A key's bucket holds up to `burst` tokens and refills at `per_minute / 60`
tokens a second; each submit takes one. The bucket lives in Redis when there is
one (a Lua script reads, refills and takes in one step, on Redis's clock), and
otherwise in the key's row (one conditional UPDATE). Either way two API
processes racing for the last token cannot both get it.

`take` returns 0.0 when a token was taken, else the seconds until one will be
there (the `Retry-After` of a 429). A Redis that cannot be reached lets the
request through (and says so in the log): rate limiting must not turn a broker
outage into refused submits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Float, case, func, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from storage.database.engine import session_scope
from storage.database.models import ApiKey
from storage.settings import Settings

log = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 0.5
REDIS_PREFIX = "inpaint:bucket:"

# KEYS[1]: the bucket. ARGV: refill per second, burst. Returns the wait in seconds, as a string.
TAKE_SCRIPT = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


@dataclass(frozen=True)
class Rate:
    per_minute: int
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


def rate_of(key: ApiKey, settings: Settings) -> Rate | None:
    """The key's own rate, else the configured default; None when it has no limit."""
    per_minute = key.rate_limit_per_minute
    if per_minute is None:
        per_minute = settings.rate_limit_per_minute
    if per_minute <= 0:
        return None
    return Rate(per_minute=per_minute, burst=key.rate_limit_burst or settings.rate_limit_burst)


class RateLimiter(Protocol):
    def take(self, key_id: int, rate: Rate) -> float: ...


class DatabaseBuckets:
    """Buckets in the api_keys rows (the embedded default: no Redis)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def take(self, key_id: int, rate: Rate, *, now: float | None = None) -> float:
        now = time.time() if now is None else now
        level = self._level(rate, now)
        with session_scope(self.sessions) as session:
            taken = session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, level >= 1)
                .values(bucket_tokens=level - 1, bucket_updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                return 0.0
            tokens = session.execute(select(level).where(ApiKey.id == key_id)).scalar_one_or_none()
        return max((1 - float(tokens or 0)) / rate.per_second, 0.001)

    @staticmethod
    def _level(rate: Rate, now: float):  # type: ignore[no-untyped-def]
        """SQL for the tokens the bucket holds at `now`: refilled since the last take, at most `burst`."""
        at = literal(now, Float)
        elapsed = at - func.coalesce(ApiKey.bucket_updated_at, at)
        elapsed = case((elapsed > 0, elapsed), else_=0.0)
        level = func.coalesce(ApiKey.bucket_tokens, float(rate.burst)) + elapsed * rate.per_second
        return case((level > rate.burst, float(rate.burst)), else_=level)


class RedisBuckets:
    """Buckets in Redis, one hash per key, expiring once they would be full again."""

    def __init__(self, url: str) -> None:
        # One short attempt: a rate check must not hold a submit while Redis is away.
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self.script = self.client.register_script(TAKE_SCRIPT)

    def take(self, key_id: int, rate: Rate) -> float:
        try:
            wait = self.script(keys=[f"{REDIS_PREFIX}{key_id}"], args=[rate.per_second, rate.burst])
        except redis.RedisError as exc:
            log.warning("rate limit not applied: Redis cannot be reached (%s)", type(exc).__name__)
            return 0.0
        return float(wait)

    def close(self) -> None:
        self.client.close()


def make_rate_limiter(settings: Settings, sessions: sessionmaker[Session]) -> DatabaseBuckets | RedisBuckets:
    url = settings.resolved_redis_url
    return RedisBuckets(url) if url else DatabaseBuckets(sessions)
