"""What an API process builds once at start-up and hands to every request."""

from __future__ import annotations

import random
from dataclasses import dataclass

from celery import Celery
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.collector import ServiceCollector
from api.ratelimit import DatabaseBuckets, RedisBuckets, make_rate_limiter
from storage.blobs.store import BlobStore
from storage.broker import make_celery
from storage.egress.fetch import FetchPolicy
from storage.settings import Settings
from storage.stores import Stores


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
    metrics: CollectorRegistry
    """What GET /metrics renders: one collector that reads the database and broker per scrape."""

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        stores = Stores.open(settings)
        celery = make_celery(settings, main="inpaint-api")
        metrics = CollectorRegistry(auto_describe=False)
        metrics.register(ServiceCollector(stores.sessions, celery, window_seconds=settings.metrics_window_seconds))
        return cls(
            settings=settings,
            engine=stores.engine,
            sessions=stores.sessions,
            blobs=stores.blobs,
            celery=celery,
            fetch_policy=FetchPolicy(
                timeout=settings.fetch_timeout_seconds,
                max_bytes=settings.max_image_bytes,
                allow_loopback=settings.allow_loopback_urls,
            ),
            rng=random.SystemRandom(),
            rate_limiter=make_rate_limiter(settings, stores.sessions),
            metrics=metrics,
        )

    def close(self) -> None:
        if isinstance(self.rate_limiter, RedisBuckets):
            self.rate_limiter.close()
        self.engine.dispose()
