"""The worker's Celery app: the shared broker settings plus the tasks and the periodic schedule.

Tasks are thin: they hand a job id to `worker.runner`, or call the reaper.
The context (database, storage, resident pipelines) is built on first use, once
per process.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from storage.broker import QUEUE_MAINTENANCE, TASK_REAP_EXPIRED, TASK_RUN_JOB, make_celery
from storage.jobs import utcnow
from storage.retention import reap_expired
from storage.settings import Settings
from worker.context import WorkerContext


def create_worker_app(settings: Settings, *, heartbeat: bool = False) -> Celery:
    """heartbeat: this process runs inference; it reports itself and takes admin commands (worker.fleet)."""
    app = make_celery(settings, main="inpaint-worker")
    app.conf.beat_schedule = {
        "reap-expired-results": {
            "task": TASK_REAP_EXPIRED,
            "schedule": settings.reaper_interval_seconds,
            "options": {"queue": QUEUE_MAINTENANCE, "expires": settings.reaper_interval_seconds},
        },
    }
    context = functools.cache(lambda: WorkerContext.build(settings))

    if heartbeat:
        started = utcnow()

        @worker_ready.connect(weak=False)
        def join_fleet(sender: Any = None, **_: Any) -> None:
            context().fleet.start(str(getattr(sender, "hostname", None) or "worker"), since=started)

        @worker_shutdown.connect(weak=False)
        def leave_fleet(**_: Any) -> None:
            context().fleet.stop()

    @app.task(name=TASK_RUN_JOB, ignore_result=True)
    def run_job(job_id: str) -> None:
        from worker.runner import run_job as run

        run(context(), job_id)

    @app.task(name=TASK_REAP_EXPIRED, ignore_result=True)
    def reap() -> int:
        ctx = context()
        return reap_expired(ctx.sessions, ctx.blobs, now=utcnow())

    return app
