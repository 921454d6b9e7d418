"""The worker's Celery app: the shared broker settings plus the tasks and the periodic schedule.

Tasks are thin: they hand an id to `worker.runner` or `worker.webhooks`, or call the
reaper. The context (database, storage, resident pipelines) is built on first
use, once per process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from storage.broker import (
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
    TASK_REAP_EXPIRED,
    TASK_RUN_JOB,
    TASK_SWEEP,
    TASK_WEBHOOK_DELIVER,
    TASK_WEBHOOK_DISPATCH,
    TASK_WEBHOOK_JOB_FINISHED,
    TASK_WEBHOOK_PROGRESS,
    make_celery,
    publish_job,
    publish_task,
    queue_depth,
)
from storage.db import session_scope
from storage.jobs import get_job, utcnow
from storage.logs import log_context
from storage.retention import reap_expired
from storage.settings import Settings
from storage.sweeper import sweep
from worker import webhooks
from worker.context import WorkerContext
from worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


def periodic_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    return {
        "reap-expired-results": {
            "task": TASK_REAP_EXPIRED,
            "schedule": settings.reaper_interval_seconds,
            "options": {"queue": QUEUE_MAINTENANCE, "expires": settings.reaper_interval_seconds},
        },
        "sweep-jobs": {
            "task": TASK_SWEEP,
            "schedule": settings.sweep_interval_seconds,
            "options": {"queue": QUEUE_MAINTENANCE, "expires": settings.sweep_interval_seconds * 2},
        },
        "dispatch-webhooks": {
            "task": TASK_WEBHOOK_DISPATCH,
            "schedule": settings.webhook_dispatch_interval_seconds,
            "options": {"queue": QUEUE_WEBHOOKS, "expires": settings.webhook_dispatch_interval_seconds * 5},
        },
    }


def create_worker_app(settings: Settings, *, heartbeat: bool = False) -> Celery:
    return build_worker(settings, heartbeat=heartbeat)[0]


def record_runs(ctx: WorkerContext, metrics: WorkerMetrics, outcomes: dict[str, str]) -> None:
    """Count the jobs a run recorded an outcome for, with the model and inference time from their rows."""
    if not outcomes:
        return
    with session_scope(ctx.sessions) as session:
        for job_id, status in outcomes.items():
            job = get_job(session, job_id)
            model, seconds = (job.model, job.inference_time) if job else ("unknown", None)
            metrics.record_job(model=model, status=status, inference_seconds=seconds)


def build_worker(settings: Settings, *, heartbeat: bool = False, started: datetime | None = None,
                 ) -> tuple[Celery, Callable[[], WorkerContext], WorkerMetrics]:
    """The Celery app with its tasks, the (lazily built, cached) context they share, and its metrics.

    heartbeat: this process runs inference; it reports itself and takes admin commands (worker.fleet).
    started: when the process started; the admin commands issued since then are carried out.
    Each task runs inside a fresh `log_context`, so job fields bound while it runs
    never leak into the next task a pool thread runs.
    """
    app = make_celery(settings, main="inpaint-worker")
    app.conf.beat_schedule = periodic_schedule(settings)

    def publish(name: str, *args: object, queue: str | None = None) -> None:
        try:
            publish_task(app, name, *args, queue=queue)
        except Exception:  # the sweeper and the webhook dispatcher are the safety nets
            log.warning("could not publish %s%r; the periodic sweep will", name, args)

    @functools.cache
    def context() -> WorkerContext:
        ctx = WorkerContext.build(settings, publish=publish)
        if heartbeat and settings.overlap_jobs:
            ctx.overlap(lambda outcomes: record_runs(ctx, metrics, outcomes))
        return ctx

    metrics = WorkerMetrics(resident=lambda: context().pipelines.resident())

    @worker_shutting_down.connect(weak=False)
    def stop_running_job(**_: object) -> None:
        context().stopping.set()

    if heartbeat:
        since = started or utcnow()

        @worker_ready.connect(weak=False)
        def join_fleet(sender: Any = None, **_: Any) -> None:
            context().fleet.start(str(getattr(sender, "hostname", None) or "worker"), since=since)

        @worker_shutdown.connect(weak=False)
        def leave_fleet(**_: Any) -> None:
            finisher = context().finisher
            if finisher and not finisher.drain(timeout=settings.storage_retry_seconds + 30):
                log.warning("stopped before every finished job was stored; the sweeper will requeue them")
            context().fleet.stop()

    @app.task(name=TASK_RUN_JOB, ignore_result=True)
    def run_job(job_id: str) -> None:
        from worker.runner import run_job as run

        with log_context(request_id=job_id):
            record_runs(context(), metrics, run(context(), job_id))

    @app.task(name=TASK_REAP_EXPIRED, ignore_result=True)
    def reap() -> int:
        ctx = context()
        return reap_expired(ctx.sessions, ctx.blobs, now=utcnow())

    @app.task(name=TASK_SWEEP, ignore_result=True)
    def sweep_jobs() -> dict[str, int]:
        ctx = context()
        report = sweep(ctx.sessions, settings, now=utcnow(),
                       publish=lambda job_id, queue: publish_job(app, job_id, queue=queue),
                       queue_depth=lambda queue: queue_depth(app, queue))
        return {name: len(ids) for name, ids in vars(report).items()}

    @app.task(name=TASK_WEBHOOK_DISPATCH, ignore_result=True)
    def dispatch_webhooks() -> int:
        return webhooks.dispatch(context(), lambda delivery_id: publish(TASK_WEBHOOK_DELIVER, delivery_id))

    @app.task(name=TASK_WEBHOOK_DELIVER, ignore_result=True)
    def deliver_webhook(delivery_id: str) -> str | None:
        with log_context():
            return deliver(delivery_id)

    @app.task(name=TASK_WEBHOOK_JOB_FINISHED, ignore_result=True)
    def job_finished(job_id: str) -> str | None:
        with log_context(request_id=job_id):
            delivery_id = webhooks.write_terminal_event(context(), job_id)
            return deliver(delivery_id) if delivery_id else None

    @app.task(name=TASK_WEBHOOK_PROGRESS, ignore_result=True)
    def job_progress(job_id: str, step: int, total: int) -> str | None:
        with log_context(request_id=job_id):
            delivery_id = webhooks.write_progress_event(context(), job_id, step, total)
            return deliver(delivery_id) if delivery_id else None

    def deliver(delivery_id: str) -> str | None:
        outcome = webhooks.attempt(context(), delivery_id)
        metrics.record_webhook(outcome)
        return outcome

    return app, context, metrics
