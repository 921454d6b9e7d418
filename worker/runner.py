"""Running one job: claim it, run `inpaint`, store the images, record the outcome.

This is the only code that moves a job through PROCESSING. A duplicate delivery
loses the claim and does nothing. Any failure ends the job FAILED with a code
and a message safe to show; the traceback goes to the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from PIL import Image

from storage.blobs import output_key
from storage.broker import TASK_WEBHOOK_JOB_FINISHED, TASK_WEBHOOK_PROGRESS
from storage.contract import JobParams
from storage.db import session_scope
from storage.errors import JobFailure
from storage.images import decode_png, encode_png
from storage.jobs import claim_job, complete_job, fail_job, get_job, record_progress, utcnow
from storage.registry import ModelSpec, find_model
from worker.context import WorkerContext
from worker.inference import inpaint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    spec: ModelSpec
    params: JobParams
    input_keys: dict[str, str]
    progress_events: bool


class ProgressRecorder:
    """on_step for a job: writes progress at most once per `interval` seconds, and the last step.

    With progress events asked for, it also publishes one at most every `event_interval`
    seconds; the light webhook worker sends it, so inference never waits on a receiver.
    """

    def __init__(self, ctx: WorkerContext, job: ClaimedJob) -> None:
        self.ctx, self.job = ctx, job
        self.interval = ctx.settings.progress_interval_seconds
        self.event_interval = ctx.settings.webhook_progress_interval_seconds
        self._last_write = self._last_event = 0.0

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step < total and now - self._last_write < self.interval:
            return
        self._last_write = now
        with session_scope(self.ctx.sessions) as session:
            record_progress(session, self.job.job_id, step=step, total=total)
        if self.job.progress_events and step < total and now - self._last_event >= self.event_interval:
            self._last_event = now
            self.ctx.publish(TASK_WEBHOOK_PROGRESS, self.job.job_id, step, total)


def run_job(ctx: WorkerContext, job_id: str) -> None:
    try:
        claimed = claim(ctx, job_id)
        if claimed is None:
            return
        log.info("job started", extra={"request_id": job_id})
        images, seconds = infer(ctx, claimed)
        keys = store_outputs(ctx, job_id, images)
    except JobFailure as exc:
        record_failure(ctx, job_id, exc.code, exc.message)
        return
    except Exception as exc:
        log.exception("job crashed", extra={"request_id": job_id})
        record_failure(ctx, job_id, "internal_error", f"the worker hit an unexpected error ({type(exc).__name__})")
        return
    with session_scope(ctx.sessions) as session:
        done = complete_job(session, job_id, output_keys=keys, output_seeds=claimed.params.seeds(),
                            inference_time=seconds, now=utcnow(), ttl=ctx.settings.result_ttl)
    if done:
        log.info("job completed in %.3f s", seconds, extra={"request_id": job_id})
        announce_end(ctx, job_id)
    else:
        log.info("job was finished elsewhere; result not recorded", extra={"request_id": job_id})


def claim(ctx: WorkerContext, job_id: str) -> ClaimedJob | None:
    """QUEUED → PROCESSING, or None when there is nothing to do (duplicate, finished, unknown)."""
    with session_scope(ctx.sessions) as session:
        # The conditional UPDATE comes first: it is the claim, and on SQLite a
        # transaction that writes must write before it reads.
        if not claim_job(session, job_id, now=utcnow()):
            log.info("nothing to do: the job is not QUEUED (duplicate delivery, finished or unknown)",
                     extra={"request_id": job_id})
            return None
        job = get_job(session, job_id)
        assert job is not None
        params = JobParams.model_validate(job.params)
        record_progress(session, job_id, step=0, total=params.num_inference_steps)
        spec = find_model(session, job.model)
        model, input_keys = job.model, dict(job.input_keys)
        progress_events = bool(job.webhook_url and "progress" in (job.webhook_events or []))
    if spec is None:
        raise JobFailure("model_unavailable", f"model {model!r} is no longer registered")
    return ClaimedJob(job_id=job_id, spec=spec, params=params, input_keys=input_keys,
                      progress_events=progress_events)


def infer(ctx: WorkerContext, job: ClaimedJob) -> tuple[list[Image.Image], float]:
    """Load the inputs and the resident pipeline, run inference. Returns the images and seconds taken."""
    image = decode_png(ctx.blobs.get(job.input_keys["image"])).convert("RGB")
    mask = decode_png(ctx.blobs.get(job.input_keys["mask"])).convert("L")
    inpainter = ctx.pipelines.get(job.spec)
    recorder = ProgressRecorder(ctx, job)
    started = time.perf_counter()
    images = inpaint(inpainter, job.params, image, mask, on_step=recorder)
    return images, round(time.perf_counter() - started, 4)


def store_outputs(ctx: WorkerContext, job_id: str, images: list[Image.Image]) -> list[str]:
    """PNG under keys derived from the job id: a retry overwrites, it never adds."""
    keys = [output_key(job_id, i) for i in range(len(images))]
    for key, image in zip(keys, images, strict=True):
        ctx.blobs.put(key, encode_png(image))
    return keys


def record_failure(ctx: WorkerContext, job_id: str, code: str, message: str) -> None:
    with session_scope(ctx.sessions) as session:
        failed = fail_job(session, job_id, code=code, message=message, now=utcnow(), ttl=ctx.settings.result_ttl)
    log.warning("job failed: %s: %s", code, message, extra={"request_id": job_id})
    if failed:
        announce_end(ctx, job_id)


def announce_end(ctx: WorkerContext, job_id: str) -> None:
    """Nudge the webhook worker to send the terminal event now (the dispatcher would, within a second)."""
    with session_scope(ctx.sessions) as session:
        job = get_job(session, job_id)
        wants = job is not None and job.webhook_url is not None
    if wants:
        ctx.publish(TASK_WEBHOOK_JOB_FINISHED, job_id)
