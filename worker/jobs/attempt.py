"""One attempt at a job, the parts every run shares: what was claimed, the heartbeat and
progress that prove it is still ours, reading its inputs, and recording how it ended.

A claim starts an attempt; every later write is conditional on that attempt still
holding the job, so a duplicate delivery, a run the sweeper gave up on, or a
cancelled job stops at the next step boundary (`Superseded`) and records nothing.
Any failure ends the job FAILED with a code and a message safe to show; the
traceback goes to the log. worker.jobs.runner runs one job, worker.jobs.batch several as one
pipeline call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from storage.blobs.images import encode_png
from storage.blobs.store import in_parallel, output_key, with_retries
from storage.broker import TASK_RUN_JOB, TASK_WEBHOOK_JOB_FINISHED, TASK_WEBHOOK_PROGRESS
from storage.contract.content import CONTENT_BLOCKED
from storage.contract.params import JobParams
from storage.contract.specs import ModelSpec
from storage.database.clock import database_now
from storage.database.engine import session_scope
from storage.database.jobs import (
    beat_heartbeat,
    complete_job,
    fail_job,
    get_job,
    record_progress,
    requeue_job,
)
from storage.database.models import JobStatus
from storage.database.registry import find_model
from storage.errors import JobFailure, NotFound, Unavailable
from storage.logs import log_context
from worker.engine.components import screen_images
from worker.engine.pipelines import PipelineCache
from worker.engine.types import JobSources
from worker.jobs.context import InferenceContext
from worker.jobs.inputs import Inputs, read_inputs

log = logging.getLogger(__name__)


class Superseded(Exception):
    """The job is no longer this attempt's (cancelled, timed out, requeued): stop quietly."""


class ShuttingDown(Exception):
    """The worker was asked to stop: give the job back to the queue."""


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    attempt: int
    queue: str
    spec: ModelSpec
    params: JobParams
    input_keys: dict[str, str]
    progress_events: bool
    track_id: Any = None


class ProgressRecorder:
    """on_step for a job: writes progress at most once per `interval` seconds, and the last step.

    Each write is also the check that the job is still ours, and the place where a
    shutdown is noticed: both end the run at a step boundary. With progress events
    asked for, it publishes one at most every `event_interval` seconds; the light
    webhook worker sends it, so inference never waits on a receiver.
    """

    def __init__(self, ctx: InferenceContext, job: ClaimedJob) -> None:
        self.ctx, self.job = ctx, job
        self.interval = ctx.settings.progress_interval_seconds
        self.event_interval = ctx.settings.webhook_progress_interval_seconds
        self._last_write = self._last_event = 0.0

    def __call__(self, step: int, total: int) -> None:
        if self.ctx.stopping.is_set() and step < total:
            raise ShuttingDown()
        now = time.monotonic()
        if step < total and now - self._last_write < self.interval:
            return
        self._last_write = now
        with session_scope(self.ctx.sessions) as session:
            ours = record_progress(session, self.job.job_id, attempt=self.job.attempt, step=step, total=total)
        if not ours:
            raise Superseded()
        if self.job.progress_events and step < total and now - self._last_event >= self.event_interval:
            self._last_event = now
            self.ctx.publish(TASK_WEBHOOK_PROGRESS, self.job.job_id, step, total)


class Heartbeat:
    """Marks the job alive every `interval` seconds from a side thread, from `start()` until `stop()`."""

    def __init__(self, ctx: InferenceContext, job: ClaimedJob) -> None:
        self.ctx, self.job = ctx, job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.job_id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.ctx.settings.heartbeat_interval_seconds):
            try:
                with session_scope(self.ctx.sessions) as session:
                    beat_heartbeat(session, self.job.job_id, attempt=self.job.attempt, now=database_now(session))
            except Exception:  # noqa: BLE001 - a missed beat is survivable; the next one may succeed
                log.warning("heartbeat write failed", exc_info=True, extra={"request_id": self.job.job_id})


def load_claimed(session: Session, job_id: str, *, spec: ModelSpec | None = None) -> ClaimedJob:
    """The job just claimed in this transaction, with its progress reset to step 0. `spec`: its
    model's, when the caller has it already (a batch's companions share the leader's)."""
    job = get_job(session, job_id)
    assert job is not None
    params = JobParams.model_validate(job.params)
    record_progress(session, job_id, attempt=job.attempts, step=0, total=params.num_inference_steps)
    spec = spec or find_model(session, job.model)
    if spec is None:
        raise JobFailure("model_unavailable", f"model {job.model!r} is no longer registered")
    return ClaimedJob(
        job_id=job_id,
        attempt=job.attempts,
        queue=job.queue,
        spec=spec,
        params=params,
        input_keys=dict(job.input_keys),
        track_id=job.track_id,
        progress_events=bool(job.webhook_url and "progress" in (job.webhook_events or [])),
    )


def load_inputs(ctx: InferenceContext, job: ClaimedJob) -> Inputs:
    """The job's image (RGB) and mask (L, at the image's size): read ahead by the prefetcher, or
    read back from storage now (retried while it is briefly away) and decoded (worker.jobs.inputs).
    Inputs that cannot be decoded raise JobFailure("invalid_input", ...), never retried."""
    ready = ctx.prefetcher.take(job.job_id, job.input_keys) if ctx.prefetcher else None
    if ready is not None:
        return ready
    budget = ctx.settings.storage_retry_seconds
    try:
        return read_inputs(
            lambda key: with_retries(lambda: ctx.blobs.get(key), budget=budget, what="reading inputs"),
            job.input_keys,
            max_pixels=ctx.settings.max_image_pixels,
        )
    except NotFound:
        raise JobFailure("storage_unavailable", "the job's input images are no longer in object storage") from None


def screen(
    pipelines: PipelineCache, sources: JobSources, params: JobParams, images: list[Image.Image]
) -> tuple[list[Image.Image], list[bool] | None]:
    """The safety check when the job asked for it: the images (replaced where flagged) and the flags.

    Under `nsfw_action: block` a flagged image raises JobFailure(content_blocked): the job ends FAILED,
    stores nothing and its credits go back (storage.contract.content)."""
    if not (params.safety and sources.safety):
        return images, None
    screened, flags = screen_images(pipelines, sources.safety, images, params.safety)
    if params.nsfw_action == "block" and any(flags):
        raise JobFailure(
            CONTENT_BLOCKED,
            f"the safety checker flagged {sum(flags)} of {len(flags)} images as NSFW; nothing was stored",
        )
    return screened, flags


def stopped(ctx: InferenceContext, job: ClaimedJob, exc: Exception) -> str | None:
    """What a run that ended in `exc` records: nothing when the job was taken away, the job given
    back when the worker is stopping, else FAILED with the reason."""
    if isinstance(exc, Superseded):
        log.info("job was taken away (cancelled, timed out or requeued); stopped", extra={"request_id": job.job_id})
        return None
    if isinstance(exc, ShuttingDown):
        give_back(ctx, job)
        return None
    return record_failure(ctx, job.job_id, *failure_of(exc, "job crashed", job.job_id), attempt=job.attempt)


def finish(
    ctx: InferenceContext,
    job: ClaimedJob,
    heartbeat: Heartbeat,
    images: list[Image.Image],
    nsfw: list[bool] | None,
    seconds: float,
) -> str | None:
    """Store the images and record COMPLETED, then stop the heartbeat. With a finisher (worker.jobs.overlap)
    this happens on its thread and returns None at once; otherwise it returns what was recorded."""

    def work() -> str | None:
        try:
            keys = store_outputs(ctx, job, images)
        except Exception as exc:
            return record_failure(
                ctx, job.job_id, *failure_of(exc, "storing the results crashed", job.job_id), attempt=job.attempt
            )
        return record_completion(ctx, job, keys, nsfw, seconds)

    def work_then_stop() -> str | None:
        try:
            with log_context(request_id=job.job_id, track_id=job.track_id):
                return work()
        finally:
            heartbeat.stop()

    if ctx.finisher is None:
        return work_then_stop()
    ctx.finisher.hand_off(job.job_id, work_then_stop)
    return None


def store_outputs(ctx: InferenceContext, job: ClaimedJob, images: list[Image.Image]) -> list[str]:
    """PNG under keys derived from the job and attempt, all at once, each retried while storage is
    briefly away."""
    keys = [output_key(job.job_id, job.attempt, i) for i in range(len(images))]

    def store(key: str, image: Image.Image) -> None:
        data = encode_png(image)
        with_retries(
            lambda: ctx.blobs.put(key, data), budget=ctx.settings.storage_retry_seconds, what="storing results"
        )

    in_parallel([partial(store, key, image) for key, image in zip(keys, images, strict=True)])
    return keys


def record_completion(
    ctx: InferenceContext, job: ClaimedJob, keys: list[str], nsfw: list[bool] | None, seconds: float
) -> str | None:
    with session_scope(ctx.sessions) as session:
        done = complete_job(
            session,
            job.job_id,
            attempt=job.attempt,
            output_keys=keys,
            output_seeds=job.params.seeds(),
            nsfw=nsfw,
            inference_time=seconds,
            now=database_now(session),
            ttl=ctx.settings.result_ttl,
        )
    if not done:
        log.info("job was finished elsewhere; this run's result is not recorded", extra={"request_id": job.job_id})
        return None
    log.info("job completed in %.3f s", seconds, extra={"request_id": job.job_id})
    announce_end(ctx, job.job_id)
    return JobStatus.COMPLETED.value


def failure_of(exc: Exception, crash: str, job_id: str) -> tuple[str, str]:
    """The error code and client-safe message a failure records. An unexpected exception is an
    `internal_error`, logged with its traceback as `crash`."""
    if isinstance(exc, JobFailure):
        return exc.code, exc.message
    if isinstance(exc, Unavailable):
        return "storage_unavailable", exc.message
    log.exception(crash, extra={"request_id": job_id})
    return "internal_error", f"the worker hit an unexpected error ({type(exc).__name__})"


def give_back(ctx: InferenceContext, job: ClaimedJob) -> None:
    """On shutdown: PROCESSING → QUEUED (the attempt does not count) and publish it again."""
    with session_scope(ctx.sessions) as session:
        requeued = requeue_job(session, job.job_id, attempt=job.attempt, now=database_now(session), refund=True)
    if requeued:
        ctx.publish(TASK_RUN_JOB, job.job_id, queue=job.queue)
        log.info("worker stopping: job given back to the queue", extra={"request_id": job.job_id})


def record_failure(ctx: InferenceContext, job_id: str, code: str, message: str, *, attempt: int | None) -> str | None:
    """FAILED with `code`; returns "FAILED" if this call recorded it, None if the job was no longer ours."""
    with session_scope(ctx.sessions) as session:
        failed = fail_job(
            session,
            job_id,
            code=code,
            message=message,
            now=database_now(session),
            ttl=ctx.settings.result_ttl,
            attempt=attempt,
        )
    log.warning("job failed: %s: %s", code, message, extra={"request_id": job_id})
    if not failed:
        return None
    announce_end(ctx, job_id)
    return JobStatus.FAILED.value


def announce_end(ctx: InferenceContext, job_id: str) -> None:
    """Nudge the webhook worker to send the terminal event now (the dispatcher would, within a second)."""
    with session_scope(ctx.sessions) as session:
        job = get_job(session, job_id)
        wants = job is not None and job.webhook_url is not None
    if wants:
        ctx.publish(TASK_WEBHOOK_JOB_FINISHED, job_id)
