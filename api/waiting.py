"""Waiting for a job to end inside a request, without holding a thread or hammering the database."""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from api.context import AppContext
from storage.database.engine import session_scope
from storage.database.jobs import get_job
from storage.database.models import Job, JobStatus

FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.25


def _load(context: AppContext, job_id: str) -> Job | None:
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        if job is not None:
            session.expunge(job)
        return job


async def wait_for_end(context: AppContext, job_id: str, *, timeout: float) -> Job | None:
    """The job once COMPLETED or FAILED, or None if it has not ended within `timeout` seconds.

    Polls with a growing interval (20 ms up to 250 ms): quick jobs answer fast, slow
    ones cost a few queries a second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = FIRST_POLL_SECONDS
    while True:
        job = await run_in_threadpool(_load, context, job_id)
        if job is not None and JobStatus(job.status).terminal:
            return job
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 1.5, MAX_POLL_SECONDS)
