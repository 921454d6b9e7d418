"""Waiting for a job to end inside a request (Segmind v1, ModelsLab), without a thread or a query of its own."""

from __future__ import annotations

import asyncio

from api.context import AppContext
from storage.database.models import Job, JobStatus


async def wait_for_end(context: AppContext, job_id: str, *, timeout: float) -> Job | None:
    """The job once COMPLETED or FAILED, or None if it has not ended within `timeout` seconds.

    The process's job watcher (api.live.watcher) reads the job with every other watched one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    subscription = context.watcher.subscribe(job_id)
    try:
        while (remaining := deadline - loop.time()) > 0:
            view = await subscription.next(remaining)
            if view is not None and view.job is not None and JobStatus(view.job.status).terminal:
                return view.job
        return None
    finally:
        context.watcher.unsubscribe(subscription)
