"""Tasks of the `webhooks` queue: writing events and delivering them (worker.ops.webhooks)."""

from __future__ import annotations

from celery import shared_task

from storage.broker import (
    TASK_WEBHOOK_DELIVER,
    TASK_WEBHOOK_DISPATCH,
    TASK_WEBHOOK_JOB_FINISHED,
    TASK_WEBHOOK_PROGRESS,
)
from storage.logs import log_context
from worker.app import current
from worker.ops import webhooks


@shared_task(name=TASK_WEBHOOK_DISPATCH, ignore_result=True)
def dispatch_webhooks() -> int:
    process = current()
    return webhooks.dispatch(process.ops, lambda delivery_id: process.publish(TASK_WEBHOOK_DELIVER, delivery_id))


@shared_task(name=TASK_WEBHOOK_DELIVER, ignore_result=True)
def deliver_webhook(delivery_id: str) -> str | None:
    with log_context():
        return deliver(delivery_id)


@shared_task(name=TASK_WEBHOOK_JOB_FINISHED, ignore_result=True)
def job_finished(job_id: str) -> str | None:
    with log_context(request_id=job_id):
        delivery_id = webhooks.write_terminal_event(current().ops, job_id)
        return deliver(delivery_id) if delivery_id else None


@shared_task(name=TASK_WEBHOOK_PROGRESS, ignore_result=True)
def job_progress(job_id: str, step: int, total: int) -> str | None:
    with log_context(request_id=job_id):
        delivery_id = webhooks.write_progress_event(current().ops, job_id, step, total)
        return deliver(delivery_id) if delivery_id else None


def deliver(delivery_id: str) -> str | None:
    """One attempt at the delivery, counted in the process's metrics."""
    process = current()
    outcome = webhooks.attempt(process.ops, delivery_id)
    process.metrics.record_webhook(outcome)
    return outcome
