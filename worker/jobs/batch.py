"""Dynamic batching: several compatible jobs (storage.contract.batching) claimed together and run as one
pipeline call, each keeping its own progress, result and failure."""

from __future__ import annotations

import logging
import time

from PIL import Image

from storage.contract.batching import batch_signature
from storage.database.clock import database_now
from storage.database.companions import claim_companions
from storage.database.engine import session_scope, write_scope
from storage.errors import JobFailure
from worker.engine.components import load_components
from worker.engine.inference import inpaint_batch
from worker.jobs.attempt import (
    ClaimedJob,
    Heartbeat,
    ProgressRecorder,
    ShuttingDown,
    Superseded,
    failure_of,
    finish,
    give_back,
    load_claimed,
    load_inputs,
    record_failure,
    screen,
)
from worker.jobs.context import InferenceContext
from worker.jobs.sources import resolve_sources

log = logging.getLogger(__name__)

Screened = tuple[list[Image.Image], list[bool] | None] | JobFailure
"""A job's images and NSFW flags after the safety check, or why it failed (content_blocked)."""


def run_batch(ctx: InferenceContext, jobs: list[ClaimedJob]) -> dict[str, str]:
    """Several compatible jobs (storage.contract.batching) as one pipeline call. What happens to one job
    (inputs that cannot be read, a cancellation, a failed upload) happens to it alone; a failure
    of the pipeline call itself fails each job with its reason. Each job records the batch's
    inference time as its own."""
    log.info(
        "job started (attempt %d) in a batch of %d with %s",
        jobs[0].attempt,
        len(jobs),
        ", ".join(job.job_id for job in jobs[1:]),
        extra={"request_id": jobs[0].job_id},
    )
    beating = {job.job_id: Heartbeat(ctx, job).start() for job in jobs}
    outcomes: dict[str, str | None] = {}
    inputs: dict[str, tuple[Image.Image, Image.Image]] = {}
    for job in jobs:
        try:
            inputs[job.job_id] = load_inputs(ctx, job)
        except Exception as exc:
            outcomes[job.job_id] = record_failure(
                ctx, job.job_id, *failure_of(exc, "reading the inputs crashed", job.job_id), attempt=job.attempt
            )
    running = [job for job in jobs if job.job_id in inputs]
    try:
        results, gone, seconds = infer_batch(ctx, running, inputs) if running else ({}, set(), 0.0)
    except Superseded:
        log.info(
            "every job of the batch was taken away (cancelled, timed out or requeued); stopped",
            extra={"request_id": jobs[0].job_id},
        )
        results, gone, seconds = {}, set(), 0.0
    except ShuttingDown:
        for job in running:
            give_back(ctx, job)
        results, gone, seconds = {}, set(), 0.0
    except Exception as exc:
        code, message = failure_of(exc, "batch crashed", jobs[0].job_id)
        outcomes |= {job.job_id: record_failure(ctx, job.job_id, code, message, attempt=job.attempt) for job in running}
        results, gone, seconds = {}, set(), 0.0
    for job_id in gone:
        log.info(
            "job was taken away (cancelled, timed out or requeued); its image is dropped", extra={"request_id": job_id}
        )
    for job in running:
        if job.job_id not in results:
            continue
        result = results[job.job_id]
        if isinstance(result, JobFailure):
            beating.pop(job.job_id).stop()
            outcomes[job.job_id] = record_failure(ctx, job.job_id, result.code, result.message, attempt=job.attempt)
        else:
            outcomes[job.job_id] = finish(ctx, job, beating.pop(job.job_id), *result, seconds)
    for heartbeat in beating.values():
        heartbeat.stop()
    return settled(outcomes)


def settled(outcomes: dict[str, str | None]) -> dict[str, str]:
    return {job_id: status for job_id, status in outcomes.items() if status}


class BatchProgress:
    """on_step for a batch: each job's ProgressRecorder. A job taken away mid-run drops out and
    the others go on; when every job is gone, the run stops (Superseded)."""

    def __init__(self, ctx: InferenceContext, jobs: list[ClaimedJob]) -> None:
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


def claim_companions_for(ctx: InferenceContext, leader: ClaimedJob) -> list[ClaimedJob]:
    """With dynamic batching on (max_batch_size > 1), the queued jobs that can share the leader's
    pipeline call, claimed in one transaction. Any error leaves them queued for their own runs."""
    limit = ctx.settings.max_batch_size - 1
    signature = batch_signature(leader.spec.family, leader.params) if limit > 0 else None
    if signature is None:
        return []
    try:
        with write_scope(ctx.sessions) as session:
            ids = claim_companions(
                session,
                job_id=leader.job_id,
                model=leader.spec.slug,
                queue=leader.queue,
                family=leader.spec.family,
                signature=signature,
                limit=limit,
                now=database_now(session),
            )
            return [load_claimed(session, job_id, spec=leader.spec) for job_id in ids]
    except Exception:  # noqa: BLE001 - batching is an optimisation: the leader runs alone
        log.warning("could not claim companions for a batch", exc_info=True, extra={"request_id": leader.job_id})
        return []


def infer_batch(
    ctx: InferenceContext, jobs: list[ClaimedJob], inputs: dict[str, tuple[Image.Image, Image.Image]]
) -> tuple[dict[str, Screened], set[str], float]:
    """One pipeline call for the jobs, then each job's safety check. Returns each remaining job's
    images and NSFW flags (or the JobFailure of a blocked one), the ids of the jobs taken away
    during the run, and the seconds taken."""
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
    results: dict[str, Screened] = {}
    for job, images in zip(jobs, generated, strict=True):
        if job.job_id not in progress.gone:
            try:
                results[job.job_id] = screen(ctx.pipelines, sources[job.job_id], job.params, images)
            except JobFailure as exc:  # content_blocked: this job alone fails
                results[job.job_id] = exc
    return results, progress.gone, round(time.perf_counter() - started, 4)
