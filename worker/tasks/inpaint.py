"""Tasks of the inference queues (`inpaint`, and any queue a registered model names)."""

from __future__ import annotations

from celery import shared_task

from storage.broker import TASK_CHECK_IMAGE, TASK_RUN_JOB
from storage.logs import log_context
from worker.app import current
from worker.jobs import checks, runner


@shared_task(name=TASK_RUN_JOB, ignore_result=True)
def run_job(job_id: str) -> None:
    """Run the job (and the companions batched with it); the job row decides whether there is work.
    Each task runs inside a fresh `log_context`, so fields bound for one job never leak into the next."""
    process = current()
    with log_context(request_id=job_id):
        process.record_runs(runner.run_job(process.inference_context(), job_id))


@shared_task(name=TASK_CHECK_IMAGE, ignore_result=True)
def check_image(check_id: str) -> None:
    """The enterprise `nsfw_image_check`: the safety checker's verdict on a stored image (worker.jobs.checks)."""
    process = current()
    with log_context(request_id=check_id):
        checks.run_check(process.inference_context(), check_id)
