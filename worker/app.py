"""The worker's Celery app and its signals, and the process that runs its tasks.

`start_worker` builds a worker process once: its stores (database, object storage),
its Celery app, its metrics and, when it consumes an inference queue, its
inference context (resident pipelines, fleet heartbeat, overlap threads). Then it
imports the task modules of the queues it consumes (worker.tasks); the tasks find
the process through `current()`. An ops worker (maintenance, webhooks) never
imports the job loop or the engine, so it carries no torch, cv2 or numpy.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from celery.utils.log import worker_logger

from storage.broker import (
    QUEUE_INPAINT,
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
    TASK_REAP_EXPIRED,
    TASK_SWEEP,
    TASK_WEBHOOK_DISPATCH,
    make_celery,
    publish_task,
)
from storage.database.engine import session_scope
from storage.database.jobs import get_job
from storage.settings import Settings
from storage.stores import WORKER_POOL, Stores
from worker.metrics import WorkerMetrics
from worker.ops.context import OpsContext

if TYPE_CHECKING:
    from worker.jobs.context import InferenceContext

log = logging.getLogger(__name__)

LIGHT_QUEUES = (QUEUE_MAINTENANCE, QUEUE_WEBHOOKS)
"""Queues of the ops side; every other queue (inpaint, or one a model names) runs inference."""
TASK_MODULES = {QUEUE_MAINTENANCE: "worker.tasks.maintenance", QUEUE_WEBHOOKS: "worker.tasks.webhooks"}
INFERENCE_TASKS = "worker.tasks.inpaint"


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


def make_worker_celery(settings: Settings) -> Celery:
    """The broker settings both sides share, plus the periodic schedule (what `beat` sends)."""
    app = make_celery(settings, main="inpaint-worker")
    app.conf.beat_schedule = periodic_schedule(settings)
    return app


def drain_seconds(settings: Settings) -> float:
    """How long a stopping inference worker waits for its finished jobs to be stored."""
    return settings.storage_retry_seconds + 30


class ExitOnUnrecoverable(logging.Handler):
    """Ends the process `grace` seconds after Celery reports an unrecoverable error, unless it ended.

    Celery logs "Unrecoverable error" when its consumer dies, then attempts a warm shutdown, and
    that can hang: kombu's Redis channel, torn down while Redis restarts, fails again while it is
    closed, and the process then neither consumes nor exits. A supervisor (compose's restart
    policy, systemd, Kubernetes) restarts only a process that exits, so this one exits; the job
    rows, not the broker, say what still needs running.
    """

    EXIT_CODE = 70  # EX_SOFTWARE

    def __init__(self, grace: float) -> None:
        super().__init__(level=logging.CRITICAL)
        self.grace = grace
        self.armed = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Unrecoverable error") and not self.armed.is_set():
            self.armed.set()
            threading.Thread(target=self.exit_later, name="exit-on-unrecoverable", daemon=True).start()

    def exit_later(self) -> None:
        time.sleep(self.grace)
        log.critical(
            "the worker neither recovered nor stopped %.0f s after an unrecoverable error; exiting", self.grace
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(self.EXIT_CODE)


def exit_on_unrecoverable(grace: float) -> ExitOnUnrecoverable:
    """Watch Celery's worker logger for its unrecoverable error (ExitOnUnrecoverable)."""
    handler = ExitOnUnrecoverable(grace)
    worker_logger.addHandler(handler)
    return handler


def runs_inference(queues: list[str]) -> bool:
    return any(queue not in LIGHT_QUEUES for queue in queues)


@dataclass
class WorkerProcess:
    """What one worker process holds while it runs; its tasks reach it through `current()`."""

    settings: Settings
    celery: Celery
    stores: Stores
    metrics: WorkerMetrics
    ops: OpsContext = field(init=False)
    inference: InferenceContext | None = None
    """The job loop's context; None in an ops worker."""

    def __post_init__(self) -> None:
        self.ops = OpsContext.build(self.settings, publish=self.publish, stores=self.stores)

    def publish(self, name: str, *args: object, queue: str | None = None) -> None:
        """Send a task by name; never raises (the sweeper and the webhook dispatcher are the safety nets)."""
        try:
            publish_task(self.celery, name, *args, queue=queue)
        except Exception:  # noqa: BLE001 - see the docstring
            log.warning("could not publish %s%r; the periodic sweep will", name, args)

    def inference_context(self) -> InferenceContext:
        if self.inference is None:
            raise RuntimeError("this worker consumes no inference queue; it cannot run a job")
        return self.inference

    def record_runs(self, outcomes: dict[str, str]) -> None:
        """Count the jobs a run recorded an outcome for, with the model and inference time from their rows."""
        if not outcomes:
            return
        with session_scope(self.stores.sessions) as session:
            for job_id, status in outcomes.items():
                job = get_job(session, job_id)
                model, seconds = (job.model, job.inference_time) if job else ("unknown", None)
                self.metrics.record_job(model=model, status=status, inference_seconds=seconds)

    def resident(self) -> list[dict[str, Any]]:
        return self.inference.pipelines.resident() if self.inference else []


_current: WorkerProcess | None = None


def current() -> WorkerProcess:
    """The process `start_worker` built; the tasks' way to their context."""
    if _current is None:
        raise RuntimeError("no worker process was started (worker.app.start_worker)")
    return _current


def start_worker(settings: Settings, *, queues: list[str], started: datetime) -> WorkerProcess:
    """Build the process for `queues`, serve its metrics, warm its models up, and register the tasks
    of its queues. `started`: when the process started; admin commands issued since then are
    carried out (worker.jobs.fleet)."""
    global _current
    exit_on_unrecoverable(grace=drain_seconds(settings) + 15)
    stores = Stores.open(settings, pool=WORKER_POOL)
    process = WorkerProcess(
        settings=settings,
        celery=make_worker_celery(settings),
        stores=stores,
        metrics=WorkerMetrics(resident=lambda: process.resident()),
    )
    process.metrics.serve(settings.worker_metrics_port)  # before warm-up, so loading models shows
    if runs_inference(queues):
        process.inference = start_inference(process, warm_up=QUEUE_INPAINT in queues)
        connect_inference_signals(process.inference, started=started, queues=queues)
    for module in {TASK_MODULES.get(queue, INFERENCE_TASKS) for queue in queues}:
        importlib.import_module(module)  # its tasks register with the app (shared_task)
    _current = process
    return process


def start_inference(process: WorkerProcess, *, warm_up: bool) -> InferenceContext:
    # The job loop and the engine are imported here, in an inference process only: an ops worker
    # must not load torch, cv2 or numpy.
    from worker.jobs.context import InferenceContext
    from worker.jobs.warmup import warm_up_models

    settings = process.settings
    ctx = InferenceContext.build(settings, publish=process.publish, stores=process.stores)
    if settings.overlap_jobs:
        ctx.overlap(process.record_runs)
    if warm_up and settings.warmup_models:
        warm_up_models(ctx, settings.warmup_models)
    return ctx


def connect_inference_signals(ctx: InferenceContext, *, started: datetime, queues: list[str]) -> None:
    """An inference worker joins the fleet when ready, gives a running job back when asked to stop,
    and stores its finished jobs before it leaves."""

    @worker_ready.connect(weak=False)
    def join_fleet(sender: Any = None, **_: Any) -> None:
        ctx.fleet.start(str(getattr(sender, "hostname", None) or "worker"), since=started, queues=queues)

    @worker_shutting_down.connect(weak=False)
    def stop_running_job(**_: Any) -> None:
        ctx.stopping.set()

    @worker_shutdown.connect(weak=False)
    def leave_fleet(**_: Any) -> None:
        if ctx.finisher and not ctx.finisher.drain(timeout=drain_seconds(ctx.settings)):
            log.warning("stopped before every finished job was stored; the sweeper will requeue them")
        ctx.fleet.stop()
