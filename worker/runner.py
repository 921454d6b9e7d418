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
from storage.contract import JobParams
from storage.db import session_scope
from storage.errors import JobFailure
from storage.images import decode_png, encode_png
from storage.jobs import claim_job, complete_job, fail_job, get_job, record_progress, utcnow
from storage.registry import ModelSpec, find_model
from worker.components import JobSources, load_components, resolve_sources
from worker.context import WorkerContext
from worker.inference import StepCallback, inpaint
from worker.pipelines import PipelineCache
from worker.screening import screen_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    spec: ModelSpec
    params: JobParams
    input_keys: dict[str, str]
    sources: JobSources


class ProgressRecorder:
    """on_step for a job: writes progress at most once per `interval` seconds, and the last step."""

    def __init__(self, ctx: WorkerContext, job_id: str, interval: float) -> None:
        self.ctx, self.job_id, self.interval = ctx, job_id, interval
        self._last = 0.0

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step < total and now - self._last < self.interval:
            return
        self._last = now
        with session_scope(self.ctx.sessions) as session:
            record_progress(session, self.job_id, step=step, total=total)


def run_job(ctx: WorkerContext, job_id: str) -> None:
    """One job, start to finish. Admin commands (clear_cache, warm-up) run first, never during it."""
    with ctx.busy:
        ctx.fleet.apply_commands()
        run_claimed_job(ctx, job_id)


def run_claimed_job(ctx: WorkerContext, job_id: str) -> None:
    try:
        claimed = claim(ctx, job_id)
        if claimed is None:
            return
        log.info("job started", extra={"request_id": job_id})
        images, nsfw, seconds = infer(ctx, claimed)
        keys = store_outputs(ctx, job_id, images)
    except JobFailure as exc:
        record_failure(ctx, job_id, exc.code, exc.message)
        return
    except Exception as exc:
        log.exception("job crashed", extra={"request_id": job_id})
        record_failure(ctx, job_id, "internal_error", f"the worker hit an unexpected error ({type(exc).__name__})")
        return
    with session_scope(ctx.sessions) as session:
        done = complete_job(session, job_id, output_keys=keys, output_seeds=claimed.params.seeds(), nsfw=nsfw,
                            inference_time=seconds, now=utcnow(), ttl=ctx.settings.result_ttl)
    log.info("job completed in %.3f s" % seconds if done else "job was finished elsewhere; result not recorded",
             extra={"request_id": job_id})


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
    if spec is None:
        raise JobFailure("model_unavailable", f"model {model!r} is no longer registered")
    with session_scope(ctx.sessions) as session:
        sources = resolve_sources(session, spec, params)
    return ClaimedJob(job_id=job_id, spec=spec, params=params, input_keys=input_keys, sources=sources)


def infer(ctx: WorkerContext, job: ClaimedJob) -> tuple[list[Image.Image], list[bool] | None, float]:
    """Load the inputs and the resident models, run inference and the safety check.

    Returns the images, the per-image NSFW flags (None when not checked) and the seconds taken.
    """
    image = decode_png(ctx.blobs.get(job.input_keys["image"])).convert("RGB")
    mask = decode_png(ctx.blobs.get(job.input_keys["mask"])).convert("L")
    recorder = ProgressRecorder(ctx, job.job_id, ctx.settings.progress_interval_seconds)
    started = time.perf_counter()
    images, nsfw = run_inference(ctx.pipelines, job.sources, job.params, image, mask, on_step=recorder)
    return images, nsfw, round(time.perf_counter() - started, 4)


def run_inference(
    pipelines: PipelineCache, sources: JobSources, params: JobParams, image: Image.Image, mask: Image.Image,
    *, on_step: StepCallback,
) -> tuple[list[Image.Image], list[bool] | None]:
    """The resident pipeline and the job's components, `inpaint`, then the safety check if asked for."""
    inpainter = pipelines.get(sources.spec)
    components = load_components(pipelines, sources)
    images = inpaint(inpainter, params, image, mask, on_step=on_step, components=components)
    if not (params.safety and sources.safety):
        return images, None
    return screen_images(pipelines, sources.safety, images, params.safety)


def store_outputs(ctx: WorkerContext, job_id: str, images: list[Image.Image]) -> list[str]:
    """PNG under keys derived from the job id: a retry overwrites, it never adds."""
    keys = [output_key(job_id, i) for i in range(len(images))]
    for key, image in zip(keys, images, strict=True):
        ctx.blobs.put(key, encode_png(image))
    return keys


def record_failure(ctx: WorkerContext, job_id: str, code: str, message: str) -> None:
    with session_scope(ctx.sessions) as session:
        fail_job(session, job_id, code=code, message=message, now=utcnow(), ttl=ctx.settings.result_ttl)
    log.warning("job failed: %s: %s", code, message, extra={"request_id": job_id})
