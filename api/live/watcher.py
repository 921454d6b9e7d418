"""One watcher per API process follows every job that someone is waiting on, and fans out the changes.

An event stream (GET /v2/requests/{id}/events) or a synchronous wait (Segmind v1,
ModelsLab) subscribes to a job and sleeps on an asyncio event: it holds no request
thread and sends no query of its own. The watcher's loop reads all watched jobs in
one query per tick (`interval`, 0.25 s), and their queue positions in one query per
queue at most once a `position_interval` (1 s); only a job whose status, step or
position changed is loaded in full and handed to its subscribers. So 600 open streams
cost the database what one does, and another key's requests keep their threads.

Its queries run on a thread of their own (a separate capacity limiter), so a full
request thread pool can never stall the streams, nor the streams the requests.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.database.engine import session_scope
from storage.database.models import Job, JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobView:
    """A job as last seen: the row (detached), or None once it has expired or never existed;
    `queue_position` for a QUEUED job."""

    job: Job | None
    queue_position: int = 0


class Subscription:
    """One waiter's view of one job: the latest JobView, and an event set when it changes."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.latest: JobView | None = None
        self._changed = asyncio.Event()

    def put(self, view: JobView) -> None:
        self.latest = view
        self._changed.set()

    async def next(self, timeout: float) -> JobView | None:
        """The newest view once there is one not yet taken; None after `timeout` seconds without."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return None
        self._changed.clear()
        return self.latest


Fingerprint = tuple[str, int, int]


class JobWatcher:
    def __init__(self, sessions: sessionmaker[Session], *, interval: float = 0.25, position_interval: float = 1.0):
        self.sessions = sessions
        self.interval = interval
        self.position_interval = position_interval
        self._subscribers: dict[str, set[Subscription]] = {}
        self._views: dict[str, JobView] = {}
        self._seen: dict[str, Fingerprint] = {}
        self._positions: dict[str, int] = {}
        self._positions_at = float("-inf")
        self._fresh: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._limiter = anyio.CapacityLimiter(1)

    @property
    def watched(self) -> int:
        return len(self._subscribers)

    def subscribe(self, job_id: str) -> Subscription:
        subscription = Subscription(job_id)
        self._subscribers.setdefault(job_id, set()).add(subscription)
        if (view := self._views.get(job_id)) is not None:
            subscription.put(view)
        else:
            self._fresh.add(job_id)  # the next poll hands it over even if it has not changed
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="job-watcher")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        waiting = self._subscribers.get(subscription.job_id)
        if waiting is None:
            return
        waiting.discard(subscription)
        if not waiting:
            del self._subscribers[subscription.job_id]
            self._views.pop(subscription.job_id, None)  # the others are pruned after the next poll

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._subscribers:
            with_positions = loop.time() - self._positions_at >= self.position_interval
            ids, fresh = list(self._subscribers), self._fresh
            self._fresh = set()
            try:
                changed = await anyio.to_thread.run_sync(self._poll, ids, fresh, with_positions, limiter=self._limiter)
            except Exception:  # noqa: BLE001 - the database may be away a while; the streams wait, then go on
                log.warning("the job watcher could not read the database; retrying", exc_info=True)
                self._fresh |= fresh
                await asyncio.sleep(1.0)
                continue
            if with_positions:
                self._positions_at = loop.time()
            self._forget_unwatched()
            for job_id, view in changed.items():
                if job_id not in self._subscribers:
                    continue  # everyone left while the query ran
                self._views[job_id] = view
                for subscription in self._subscribers[job_id]:
                    subscription.put(view)
            await asyncio.sleep(self.interval)

    def _forget_unwatched(self) -> None:
        for cache in (self._views, self._seen, self._positions):
            for job_id in [job_id for job_id in cache if job_id not in self._subscribers]:
                del cache[job_id]

    def _poll(self, ids: list[str], fresh: set[str], with_positions: bool) -> dict[str, JobView]:
        """The views of the jobs that changed since the last poll, and of the `fresh` ones (just
        subscribed to, with no view to hand over yet)."""
        with session_scope(self.sessions) as session:
            rows = session.execute(
                select(Job.id, Job.status, Job.progress_step, Job.queue, Job.created_at).where(Job.id.in_(ids))
            ).all()
            if with_positions:
                queued = [(r.id, r.queue, r.created_at) for r in rows if r.status == JobStatus.QUEUED]
                self._positions.update(queue_positions(session, queued))
            fingerprints = {r.id: (r.status, r.progress_step, self._positions.get(r.id, 0)) for r in rows}
            changed = [
                job_id for job_id, seen in fingerprints.items() if job_id in fresh or self._seen.get(job_id) != seen
            ]
            views: dict[str, JobView] = {}
            if changed:
                for job in session.execute(select(Job).where(Job.id.in_(changed))).scalars():
                    session.expunge(job)
                    views[job.id] = JobView(job, queue_position=self._positions.get(job.id, 0))
            for job_id in set(ids) - set(fingerprints):
                if job_id in fresh or self._seen.get(job_id) != ("", 0, 0):
                    views[job_id] = JobView(None)
                fingerprints[job_id] = ("", 0, 0)
        self._seen.update(fingerprints)
        return views


def queue_positions(session: Session, queued: Iterable[tuple[str, str, datetime]]) -> dict[str, int]:
    """How many QUEUED jobs of its queue are ahead of each job: one query per queue, then a bisect."""
    by_queue: dict[str, list[tuple[str, datetime]]] = {}
    for job_id, queue, created_at in queued:
        by_queue.setdefault(queue, []).append((job_id, created_at))
    positions: dict[str, int] = {}
    for queue, jobs in by_queue.items():
        latest = max(created_at for _, created_at in jobs)
        ahead = list(
            session.execute(
                select(Job.created_at)
                .where(Job.status == JobStatus.QUEUED.value, Job.queue == queue, Job.created_at < latest)
                .order_by(Job.created_at)
            ).scalars()
        )
        for job_id, created_at in jobs:
            positions[job_id] = bisect.bisect_left(ahead, created_at)
    return positions
