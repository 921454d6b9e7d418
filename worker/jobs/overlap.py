"""Keeping the GPU busy between jobs: the end of one job and the start of the next run beside inference.

- `Finisher`: one side thread runs the end of each job (PNG encoding, the result
  upload, the status write, the webhook nudge), so the inference thread can take
  the next job at once. At most `depth` finished jobs wait for it; a further
  hand-off blocks, which bounds the images held in memory. A job being finished
  is still PROCESSING and its heartbeat still beats, so a worker that dies here
  leaves it to the sweeper, which requeues it.
- `Prefetcher`: while a job runs, a side thread reads and decodes the inputs of the
  queue's oldest QUEUED jobs (the ones this worker most likely runs next). A claim
  takes them from it instead of reading storage; a guess that was wrong (another
  worker took that job) costs one read, and is dropped at the next read-ahead. Inputs
  that cannot be decoded are skipped: the job's own attempt reads them and fails it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from storage.blobs.store import BlobStore
from storage.database.engine import session_scope
from storage.database.jobs import next_queued
from storage.errors import JobFailure
from worker.jobs.inputs import Inputs, read_inputs

log = logging.getLogger(__name__)


class Finisher:
    """Runs `work()` for each handed-off job on one side thread, in hand-off order, and reports
    {job_id: status} to `on_done` for each that recorded one."""

    def __init__(self, on_done: Callable[[dict[str, str]], None], *, depth: int = 2) -> None:
        self.on_done = on_done
        self._waiting: queue.Queue[tuple[str, Callable[[], str | None]]] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="finisher", daemon=True)
        self._thread.start()

    def hand_off(self, job_id: str, work: Callable[[], str | None]) -> None:
        self._waiting.put((job_id, work))

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every handed-off job is finished; False if `timeout` passed first."""
        with self._waiting.all_tasks_done:
            return self._waiting.all_tasks_done.wait_for(lambda: not self._waiting.unfinished_tasks, timeout)

    def _run(self) -> None:
        while True:
            job_id, work = self._waiting.get()
            try:
                status = work()
                if status:
                    self.on_done({job_id: status})
            except Exception:  # noqa: BLE001 - `work` records failures itself; this thread must live on
                log.exception("finishing a job crashed", extra={"request_id": job_id})
            finally:
                self._waiting.task_done()


class Prefetcher:
    """Inputs of the jobs likely to run next, read and decoded ahead (worker.jobs.inputs, at most
    `max_pixels` each). Keeps at most `capacity`."""

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, *, capacity: int, max_pixels: int) -> None:
        self.sessions, self.blobs, self.capacity, self.max_pixels = sessions, blobs, capacity, max_pixels
        self._ready: dict[str, tuple[dict[str, str], Inputs]] = {}
        self._lock = threading.Lock()
        self._wanted: str | None = None
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetcher", daemon=True)
        self._thread.start()

    def ahead_of(self, queue_name: str) -> None:
        """A job (or batch) of `queue_name` started: read the inputs of the queue's next jobs."""
        self._wanted = queue_name
        self._wake.set()

    def take(self, job_id: str, input_keys: dict[str, str]) -> Inputs | None:
        """The job's inputs if they were read ahead (from the same keys), else None."""
        with self._lock:
            entry = self._ready.pop(job_id, None)
        return entry[1] if entry is not None and entry[0] == input_keys else None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                if self._wanted is not None:
                    self._read_ahead(self._wanted)
            except Exception:  # noqa: BLE001 - reading ahead is an optimisation: the claim reads them itself
                log.debug("reading the next jobs' inputs ahead failed", exc_info=True)

    def _read_ahead(self, queue_name: str) -> None:
        with session_scope(self.sessions) as session:
            upcoming = next_queued(session, queue=queue_name, limit=self.capacity)
        with self._lock:  # jobs no longer waiting (run, cancelled) will not be asked for
            for job_id in set(self._ready) - {job_id for job_id, _ in upcoming}:
                del self._ready[job_id]
        for job_id, keys in upcoming:
            if job_id not in self._ready:
                try:
                    inputs = read_inputs(self.blobs.get, keys, max_pixels=self.max_pixels)
                except JobFailure:
                    log.debug("the inputs of a job to come cannot be decoded; its run will say why")
                    continue
                with self._lock:
                    self._ready[job_id] = (keys, inputs)
