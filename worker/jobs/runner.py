"""Running one job: claim it, run `inpaint`, store the images, record the outcome.

This is the only code that moves a job from QUEUED to PROCESSING (worker.jobs.attempt
has what every attempt shares: heartbeat, progress, recording the end). A job
whose compatible neighbours can share its pipeline call runs with them as a batch
(worker.jobs.batch).

Between jobs (never during one) the worker applies the admin commands it was
sent (worker.jobs.fleet: clear_cache, warm-up). The job's named components (base
model, VAE, LoRAs, ControlNet, safety checker) are resolved from the registry
inside the attempt, so a name that vanished fails the job with a reason.
"""

from __future__ import annotations

import logging
import time

from PIL import Image

from storage.contract.params import JobParams
from storage.database.clock import database_now
from storage.database.engine import session_scope
from storage.database.jobs import claim_job
from storage.errors import JobFailure
from storage.logs import add_log_fields
from worker.engine.components import load_components
from worker.engine.inference import inpaint
from worker.engine.pipelines import PipelineCache
from worker.engine.types import JobSources, StepCallback
from worker.jobs.attempt import (
    ClaimedJob,
    Heartbeat,
    ProgressRecorder,
    finish,
    load_claimed,
    load_inputs,
    record_failure,
    screen,
    stopped,
)
from worker.jobs.batch import claim_companions_for, run_batch
from worker.jobs.context import InferenceContext
from worker.jobs.sources import resolve_sources

log = logging.getLogger(__name__)


def run_job(ctx: InferenceContext, job_id: str) -> dict[str, str]:
    """One delivery of the job, start to finish, with the companions it was batched with (if any).
    Returns the status each job's run recorded (COMPLETED, FAILED); a job whose run recorded
    nothing (a duplicate delivery, a job taken away) is absent, and so is a job handed to the
    finisher (worker.jobs.overlap), which reports it when it is stored. Admin commands (clear_cache,
    warm-up) run first, never during it."""
    with ctx.busy:
        ctx.fleet.apply_commands()
        outcomes = run_claimed_job(ctx, job_id)
        ctx.fleet.report_if_changed()
        return outcomes


def run_claimed_job(ctx: InferenceContext, job_id: str) -> dict[str, str]:
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


def run_alone(ctx: InferenceContext, claimed: ClaimedJob) -> str | None:
    log.info("job started (attempt %d)", claimed.attempt, extra={"request_id": claimed.job_id})
    heartbeat = Heartbeat(ctx, claimed).start()
    try:
        images, nsfw, seconds = infer(ctx, claimed)
    except Exception as exc:
        heartbeat.stop()
        return stopped(ctx, claimed, exc)
    return finish(ctx, claimed, heartbeat, images, nsfw, seconds)


def claim(ctx: InferenceContext, job_id: str) -> ClaimedJob | None:
    """QUEUED → PROCESSING, or None when there is nothing to do (duplicate, finished, unknown)."""
    with session_scope(ctx.sessions) as session:
        # The conditional UPDATE comes first: it is the claim, and on SQLite a
        # transaction that writes must write before it reads.
        if not claim_job(session, job_id, now=database_now(session)):
            log.info(
                "nothing to do: the job is not QUEUED (duplicate delivery, finished or unknown)",
                extra={"request_id": job_id},
            )
            return None
        claimed = load_claimed(session, job_id)
        add_log_fields(track_id=claimed.track_id)
        return claimed


def infer(ctx: InferenceContext, job: ClaimedJob) -> tuple[list[Image.Image], list[bool] | None, float]:
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


def run_inference(
    pipelines: PipelineCache,
    sources: JobSources,
    params: JobParams,
    image: Image.Image,
    mask: Image.Image,
    *,
    on_step: StepCallback,
) -> tuple[list[Image.Image], list[bool] | None]:
    """The resident pipeline and the job's components, `inpaint`, then the safety check if asked for."""
    inpainter = pipelines.get(sources.spec)
    components = load_components(pipelines, sources)
    images = inpaint(inpainter, params, image, mask, on_step=on_step, components=components)
    return screen(pipelines, sources, params, images)
