"""What an API process builds once at start-up and hands to every request."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from celery import Celery
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.collector import ServiceCollector
from api.edge.admission import Slots
from api.edge.database_guard import DatabaseGuard, refuse_abandoned_commits
from api.live.watcher import JobWatcher
from api.ratelimit import DatabaseBuckets, RedisBuckets, make_rate_limiter
from api.serving import ServingView
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
    watcher: JobWatcher
    """Follows the jobs that event streams and synchronous waits are waiting on (api.live.watcher)."""
    guard: DatabaseGuard
    """Whether the database still answers (api.edge.database_guard)."""
    requests: Slots
    """Requests in progress, for the process and per key (api.edge.admission)."""
    streams: Slots
    fetches: Slots
    """Image URLs being fetched, taken around each fetch (api.submit)."""
    serving: ServingView
    """What the online workers can serve (api.serving)."""

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        stores = Stores.open(settings, timeout=settings.database_timeout_seconds)
        refuse_abandoned_commits(stores.sessions)
        celery = make_celery(settings, main="inpaint-api")
        metrics = CollectorRegistry(auto_describe=False)
        metrics.register(
            ServiceCollector(
                stores.sessions,
                celery,
                window_seconds=settings.metrics_window_seconds,
                offline_after=timedelta(seconds=3 * settings.worker_heartbeat_seconds),
            )
        )
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
            watcher=JobWatcher(stores.sessions),
            serving=ServingView(stores.sessions, stale_after=timedelta(seconds=3 * settings.worker_heartbeat_seconds)),
            guard=DatabaseGuard(settings.resolved_database_url, deadline=settings.database_timeout_seconds),
            **admission_slots(settings),
        )

    def close(self) -> None:
        if isinstance(self.rate_limiter, RedisBuckets):
            self.rate_limiter.close()
        self.guard.stop()
        self.engine.dispose()


def admission_slots(settings: Settings) -> dict[str, Slots]:
    """The process's limits on requests, event streams and image fetches, each total and per key."""

    def slots(what: str, total: str, per_key: str) -> Slots:
        return Slots(
            what,
            total=getattr(settings, total),
            per_caller=getattr(settings, per_key),
            total_setting=f"INPAINT_{total.upper()}",
            per_caller_setting=f"INPAINT_{per_key.upper()}",
        )

    return {
        "requests": slots("requests", "max_requests", "max_requests_per_key"),
        "streams": slots("event streams", "max_event_streams", "max_event_streams_per_key"),
        "fetches": slots("image fetches", "max_image_fetches", "max_image_fetches_per_key"),
    }
