"""What an API process builds once at start-up and hands to every request."""

from __future__ import annotations

import random
from dataclasses import dataclass

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.blobs import BlobStore, make_blob_store
from storage.broker import make_celery
from storage.db import make_engine, make_session_factory
from storage.ratelimit import DatabaseBuckets, RedisBuckets, make_rate_limiter
from storage.safe_fetch import FetchPolicy
from storage.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    celery: Celery
    fetch_policy: FetchPolicy
    rng: random.SystemRandom
    rate_limiter: DatabaseBuckets | RedisBuckets

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        engine = make_engine(settings.resolved_database_url)
        sessions = make_session_factory(engine)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            blobs=make_blob_store(settings),
            celery=make_celery(settings, main="inpaint-api"),
            fetch_policy=FetchPolicy(
                timeout=settings.fetch_timeout_seconds,
                max_bytes=settings.max_image_bytes,
                allow_loopback=settings.allow_loopback_urls,
            ),
            rng=random.SystemRandom(),
            rate_limiter=make_rate_limiter(settings, sessions),
        )

    def close(self) -> None:
        if isinstance(self.rate_limiter, RedisBuckets):
            self.rate_limiter.close()
        self.engine.dispose()
