"""Running one job: claim it, run `inpaint`, store the images, record the outcome.

This is the only code that moves a job through PROCESSING. A claim starts an
attempt; every later write of the run is conditional on that attempt still
holding the job, so a duplicate delivery, a run the sweeper gave up on, or a
cancelled job stops at the next step boundary and records nothing. While it
runs, a heartbeat thread marks the job alive. Any failure ends the job FAILED
with a code and a message safe to show; the traceback goes to the log.

Between jobs (never during one) the worker applies the admin commands it was
sent (worker.fleet: clear_cache, warm-up). The job's named components (base
model, VAE, LoRAs, ControlNet, safety checker) are resolved from the registry
inside the attempt, so a name that vanished fails the job with a reason.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from storage.batching import batch_signature, claim_companions
from storage.blobs import output_key, with_retries
from storage.broker import TASK_RUN_JOB, TASK_WEBHOOK_JOB_FINISHED, TASK_WEBHOOK_PROGRESS
from storage.contract import JobParams
from storage.db import session_scope, write_scope
from storage.errors import JobFailure, NotFound, Unavailable
from storage.images import encode_png
from storage.jobs import (
    beat_heartbeat,
    claim_job,
    complete_job,
    fail_job,
    get_job,
    record_progress,
    requeue_job,
    utcnow,
)
from storage.logs import add_log_fields, log_context
from storage.models import JobStatus
from storage.registry import ModelSpec, find_model
from worker.components import JobSources, load_components, resolve_sources
from worker.context import WorkerContext
from worker.inference import StepCallback, inpaint, inpaint_batch
from worker.overlap import read_inputs
from worker.pipelines import PipelineCache
from worker.screening import screen_images

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

    def __init__(self, ctx: WorkerContext, job: ClaimedJob) -> None:
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

    def __init__(self, ctx: WorkerContext, job: ClaimedJob) -> None:
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
                    beat_heartbeat(session, self.job.job_id, attempt=self.job.attempt, now=utcnow())
            except Exception:  # noqa: BLE001 - a missed beat is survivable; the next one may succeed
                log.warning("heartbeat write failed", exc_info=True, extra={"request_id": self.job.job_id})


def run_job(ctx: WorkerContext, job_id: str) -> dict[str, str]:
    """One delivery of the job, start to finish, with the companions it was batched with (if any).
    Returns the status each job's run recorded (COMPLETED, FAILED); a job whose run recorded
    nothing (a duplicate delivery, a job taken away) is absent, and so is a job handed to the
    finisher (worker.overlap), which reports it when it is stored. Admin commands (clear_cache,
    warm-up) run first, never during it."""
    with ctx.busy:
        ctx.fleet.apply_commands()
        outcomes = run_claimed_job(ctx, job_id)
        ctx.fleet.report_if_changed()
        return outcomes


def run_claimed_job(ctx: WorkerContext, job_id: str) -> dict[str, str]:
    try:
        claimed = claim(ctx, job_id)
    except JobFailure as exc:
        return outcome(job_id, record_failure(ctx, job_id, exc.code, exc.message, attempt=None))
    if claimed is None:
        return {}
    companions = claim_companions_for(ctx, claimed)
    if companions:
        return run_batch(ctx, [claimed, *companions])
    return outcome(job_id, run_alone(ctx, claimed))


def outcome(job_id: str, status: str | None) -> dict[str, str]:
    return {job_id: status} if status else {}


def run_alone(ctx: WorkerContext, claimed: ClaimedJob) -> str | None:
    log.info("job started (attempt %d)", claimed.attempt, extra={"request_id": claimed.job_id})
    heartbeat = Heartbeat(ctx, claimed).start()
    try:
        images, nsfw, seconds = infer(ctx, claimed)
    except Exception as exc:
        heartbeat.stop()
        return stopped(ctx, claimed, exc)
    return finish(ctx, claimed, heartbeat, images, nsfw, seconds)


def stopped(ctx: WorkerContext, job: ClaimedJob, exc: Exception) -> str | None:
    """What a run that ended in `exc` records: nothing when the job was taken away, the job given
    back when the worker is stopping, else FAILED with the reason."""
    if isinstance(exc, Superseded):
        log.info("job was taken away (cancelled, timed out or requeued); stopped", extra={"request_id": job.job_id})
        return None
    if isinstance(exc, ShuttingDown):
        give_back(ctx, job)
        return None
    return record_failure(ctx, job.job_id, *failure_of(exc, "job crashed", job.job_id), attempt=job.attempt)


def finish(ctx: WorkerContext, job: ClaimedJob, heartbeat: Heartbeat, images: list[Image.Image],
           nsfw: list[bool] | None, seconds: float) -> str | None:
    """Store the images and record COMPLETED, then stop the heartbeat. With a finisher (worker.overlap)
    this happens on its thread and returns None at once; otherwise it returns what was recorded."""
    def work() -> str | None:
        try:
            keys = store_outputs(ctx, job, images)
        except Exception as exc:
            return record_failure(ctx, job.job_id, *failure_of(exc, "storing the results crashed", job.job_id),
                                  attempt=job.attempt)
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


def record_completion(ctx: WorkerContext, job: ClaimedJob, keys: list[str], nsfw: list[bool] | None,
                      seconds: float) -> str | None:
    with session_scope(ctx.sessions) as session:
        done = complete_job(session, job.job_id, attempt=job.attempt, output_keys=keys,
                            output_seeds=job.params.seeds(), nsfw=nsfw, inference_time=seconds,
                            now=utcnow(), ttl=ctx.settings.result_ttl)
    if not done:
        log.info("job was finished elsewhere; this run's result is not recorded", extra={"request_id": job.job_id})
        return None
    log.info("job completed in %.3f s", seconds, extra={"request_id": job.job_id})
    announce_end(ctx, job.job_id)
    return JobStatus.COMPLETED.value


def run_batch(ctx: WorkerContext, jobs: list[ClaimedJob]) -> dict[str, str]:
    """Several compatible jobs (storage.batching) as one pipeline call. What happens to one job
    (inputs that cannot be read, a cancellation, a failed upload) happens to it alone; a failure
    of the pipeline call itself fails each job with its reason. Each job records the batch's
    inference time as its own."""
    log.info("job started (attempt %d) in a batch of %d with %s", jobs[0].attempt, len(jobs),
             ", ".join(job.job_id for job in jobs[1:]), extra={"request_id": jobs[0].job_id})
    beating = {job.job_id: Heartbeat(ctx, job).start() for job in jobs}
    outcomes: dict[str, str | None] = {}
    inputs: dict[str, tuple[Image.Image, Image.Image]] = {}
    for job in jobs:
        try:
            inputs[job.job_id] = load_inputs(ctx, job)
        except Exception as exc:
            outcomes[job.job_id] = record_failure(
                ctx, job.job_id, *failure_of(exc, "reading the inputs crashed", job.job_id), attempt=job.attempt)
    running = [job for job in jobs if job.job_id in inputs]
    try:
        results, gone, seconds = infer_batch(ctx, running, inputs) if running else ({}, set(), 0.0)
    except Superseded:
        log.info("every job of the batch was taken away (cancelled, timed out or requeued); stopped",
                 extra={"request_id": jobs[0].job_id})
        results, gone, seconds = {}, set(), 0.0
    except ShuttingDown:
        for job in running:
            give_back(ctx, job)
        results, gone, seconds = {}, set(), 0.0
    except Exception as exc:
        code, message = failure_of(exc, "batch crashed", jobs[0].job_id)
        outcomes |= {job.job_id: record_failure(ctx, job.job_id, code, message, attempt=job.attempt)
                     for job in running}
        results, gone, seconds = {}, set(), 0.0
    for job_id in gone:
        log.info("job was taken away (cancelled, timed out or requeued); its image is dropped",
                 extra={"request_id": job_id})
    for job in running:
        if job.job_id in results:
            images, nsfw = results[job.job_id]
            outcomes[job.job_id] = finish(ctx, job, beating.pop(job.job_id), images, nsfw, seconds)
    for heartbeat in beating.values():
        heartbeat.stop()
    return settled(outcomes)


def settled(outcomes: dict[str, str | None]) -> dict[str, str]:
    return {job_id: status for job_id, status in outcomes.items() if status}


def failure_of(exc: Exception, crash: str, job_id: str) -> tuple[str, str]:
    """The error code and client-safe message a failure records. An unexpected exception is an
    `internal_error`, logged with its traceback as `crash`."""
    if isinstance(exc, JobFailure):
        return exc.code, exc.message
    if isinstance(exc, Unavailable):
        return "storage_unavailable", exc.message
    log.exception(crash, extra={"request_id": job_id})
    return "internal_error", f"the worker hit an unexpected error ({type(exc).__name__})"


class BatchProgress:
    """on_step for a batch: each job's ProgressRecorder. A job taken away mid-run drops out and
    the others go on; when every job is gone, the run stops (Superseded)."""

    def __init__(self, ctx: WorkerContext, jobs: list[ClaimedJob]) -> None:
        self.recorders = {job.job_id: ProgressRecorder(ctx, job) for job in jobs}
        self.gone: set[str] = set()

    def __call__(self, step: int, total: int) -> None:
        for job_id, recorder in self.recorders.items():
            if job_id not in self.gone:
                try:
                    recorder(step, total)
                except Superseded:
                    self.gone.add(job_id)
        if len(self.gone) == len(self.recorders):
            raise Superseded()


def claim(ctx: WorkerContext, job_id: str) -> ClaimedJob | None:
    """QUEUED → PROCESSING, or None when there is nothing to do (duplicate, finished, unknown)."""
    with session_scope(ctx.sessions) as session:
        # The conditional UPDATE comes first: it is the claim, and on SQLite a
        # transaction that writes must write before it reads.
        if not claim_job(session, job_id, now=utcnow()):
            log.info("nothing to do: the job is not QUEUED (duplicate delivery, finished or unknown)",
                     extra={"request_id": job_id})
            return None
        claimed = load_claimed(session, job_id)
        add_log_fields(track_id=claimed.track_id)
        return claimed


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
    return ClaimedJob(job_id=job_id, attempt=job.attempts, queue=job.queue, spec=spec, params=params,
                      input_keys=dict(job.input_keys), track_id=job.track_id,
                      progress_events=bool(job.webhook_url and "progress" in (job.webhook_events or [])))


def claim_companions_for(ctx: WorkerContext, leader: ClaimedJob) -> list[ClaimedJob]:
    """With dynamic batching on (max_batch_size > 1), the queued jobs that can share the leader's
    pipeline call, claimed in one transaction. Any error leaves them queued for their own runs."""
    limit = ctx.settings.max_batch_size - 1
    signature = batch_signature(leader.spec.family, leader.params) if limit > 0 else None
    if signature is None:
        return []
    try:
        with write_scope(ctx.sessions) as session:
            ids = claim_companions(session, job_id=leader.job_id, model=leader.spec.slug, queue=leader.queue,
                                   family=leader.spec.family, signature=signature, limit=limit, now=utcnow())
            return [load_claimed(session, job_id, spec=leader.spec) for job_id in ids]
    except Exception:  # noqa: BLE001 - batching is an optimisation: the leader runs alone
        log.warning("could not claim companions for a batch", exc_info=True,
                    extra={"request_id": leader.job_id})
        return []


def load_inputs(ctx: WorkerContext, job: ClaimedJob) -> tuple[Image.Image, Image.Image]:
    """The job's image (RGB) and mask (L): read ahead by the prefetcher, or read back from storage
    now (retried while it is briefly away)."""
    ready = ctx.prefetcher.take(job.job_id, job.input_keys) if ctx.prefetcher else None
    if ready is not None:
        return ready
    budget = ctx.settings.storage_retry_seconds
    try:
        return read_inputs(lambda key: with_retries(lambda: ctx.blobs.get(key), budget=budget, what="reading inputs"),
                           job.input_keys)
    except NotFound:
        raise JobFailure("storage_unavailable", "the job's input images are no longer in object storage") from None


def infer(ctx: WorkerContext, job: ClaimedJob) -> tuple[list[Image.Image], list[bool] | None, float]:
    """Load the inputs, the resident models and the job's components, run inference and the safety check.

    Returns the images, the per-image NSFW flags (None when not checked) and the seconds taken.
    """
    with session_scope(ctx.sessions) as session:
        sources = resolve_sources(session, job.spec, job.params)
    image, mask = load_inputs(ctx, job)
    if ctx.prefetcher:
        ctx.prefetcher.ahead_of(job.queue)
    recorder = ProgressRecorder(ctx, job)
    started = time.perf_counter()
    images, nsfw = run_inference(ctx.pipelines, sources, job.params, image, mask, on_step=recorder)
    return images, nsfw, round(time.perf_counter() - started, 4)


def infer_batch(
    ctx: WorkerContext, jobs: list[ClaimedJob], inputs: dict[str, tuple[Image.Image, Image.Image]]
) -> tuple[dict[str, tuple[list[Image.Image], list[bool] | None]], set[str], float]:
    """One pipeline call for the jobs, then each job's safety check. Returns each remaining job's
    images and NSFW flags, the ids of the jobs taken away during the run, and the seconds taken."""
    with session_scope(ctx.sessions) as session:
        sources = {job.job_id: resolve_sources(session, job.spec, job.params) for job in jobs}
    shared = sources[jobs[0].job_id]  # equal signatures: the same weights and components
    progress = BatchProgress(ctx, jobs)
    if ctx.prefetcher:
        ctx.prefetcher.ahead_of(jobs[0].queue)
    started = time.perf_counter()
    inpainter = ctx.pipelines.get(shared.spec)
    components = load_components(ctx.pipelines, shared)
    batch = [(job.params, *inputs[job.job_id]) for job in jobs]
    generated = inpaint_batch(inpainter, batch, on_step=progress, components=components)
    results = {
        job.job_id: screen(ctx.pipelines, sources[job.job_id], job.params, images)
        for job, images in zip(jobs, generated, strict=True) if job.job_id not in progress.gone
    }
    return results, progress.gone, round(time.perf_counter() - started, 4)


def run_inference(
    pipelines: PipelineCache, sources: JobSources, params: JobParams, image: Image.Image, mask: Image.Image,
    *, on_step: StepCallback,
) -> tuple[list[Image.Image], list[bool] | None]:
    """The resident pipeline and the job's components, `inpaint`, then the safety check if asked for."""
    inpainter = pipelines.get(sources.spec)
    components = load_components(pipelines, sources)
    images = inpaint(inpainter, params, image, mask, on_step=on_step, components=components)
    return screen(pipelines, sources, params, images)


def screen(
    pipelines: PipelineCache, sources: JobSources, params: JobParams, images: list[Image.Image]
) -> tuple[list[Image.Image], list[bool] | None]:
    """The safety check when the job asked for it: the images (replaced where flagged) and the flags."""
    if not (params.safety and sources.safety):
        return images, None
    return screen_images(pipelines, sources.safety, images, params.safety)


def store_outputs(ctx: WorkerContext, job: ClaimedJob, images: list[Image.Image]) -> list[str]:
    """PNG under keys derived from the job and attempt, retried while storage is briefly away."""
    keys = [output_key(job.job_id, job.attempt, i) for i in range(len(images))]
    for key, image in zip(keys, images, strict=True):
        data = encode_png(image)
        with_retries(lambda k=key, d=data: ctx.blobs.put(k, d), budget=ctx.settings.storage_retry_seconds,
                     what="storing results")
    return keys


def give_back(ctx: WorkerContext, job: ClaimedJob) -> None:
    """On shutdown: PROCESSING → QUEUED (the attempt does not count) and publish it again."""
    with session_scope(ctx.sessions) as session:
        requeued = requeue_job(session, job.job_id, attempt=job.attempt, now=utcnow(), refund=True)
    if requeued:
        ctx.publish(TASK_RUN_JOB, job.job_id, queue=job.queue)
        log.info("worker stopping: job given back to the queue", extra={"request_id": job.job_id})


def record_failure(ctx: WorkerContext, job_id: str, code: str, message: str, *, attempt: int | None) -> str | None:
    """FAILED with `code`; returns "FAILED" if this call recorded it, None if the job was no longer ours."""
    with session_scope(ctx.sessions) as session:
        failed = fail_job(session, job_id, code=code, message=message, now=utcnow(), ttl=ctx.settings.result_ttl,
                          attempt=attempt)
    log.warning("job failed: %s: %s", code, message, extra={"request_id": job_id})
    if not failed:
        return None
    announce_end(ctx, job_id)
    return JobStatus.FAILED.value


def announce_end(ctx: WorkerContext, job_id: str) -> None:
    """Nudge the webhook worker to send the terminal event now (the dispatcher would, within a second)."""
    with session_scope(ctx.sessions) as session:
        job = get_job(session, job_id)
        wants = job is not None and job.webhook_url is not None
    if wants:
        ctx.publish(TASK_WEBHOOK_JOB_FINISHED, job_id)
