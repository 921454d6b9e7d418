"""The database guard: a database that has stopped answering gives 503 with Retry-After within
seconds, not a hang as long as the outage; and a request answered 503 writes nothing.

A PostgreSQL server that is frozen (stopped, a network partition) rather than down refuses
nothing: connections open, queries are sent, and no answer ever comes, so no driver timeout
fires and no statement_timeout can (the server enforces it). Each request thread would wait for
the whole outage, and its client's work would be written when it ends, long after the client
gave up. So:

- a probe thread sends `SELECT 1` on a connection of its own every `interval` seconds; the
  database is *stalled* while a probe has gone unanswered for `deadline` seconds, or failed;
- while it is stalled, a new request is answered 503 at once; a request in progress that has
  not started its response is answered 503 as soon as the stall is seen, and marked abandoned;
- an abandoned request's transaction is rolled back instead of committed (a `before_commit`
  hook on the API's sessions), so the job its client was told failed is never created. The
  one window left: a COMMIT already sent when the server froze completes when it thaws.

`/healthz` (the process is alive) is never guarded; `/readyz` is, and says 503 while stalled.
SQLite cannot freeze this way: the guard is off there.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.edge.answer import DATABASE_UNAVAILABLE, error_content, send_json

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
UNGUARDED_PATHS = frozenset({"/healthz"})
ABANDONED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("abandoned", default=None)


class RequestAbandoned(InvalidRequestError):
    """The request's client was answered 503 while this transaction waited: roll it back."""


class DatabaseGuard:
    """Probes the database from a thread of its own; `stalled` says whether it has stopped answering."""

    def __init__(self, url: str, *, deadline: float, interval: float = 1.0) -> None:
        self.deadline = deadline
        self.interval = interval
        self.enabled = not url.startswith("sqlite")
        self._engine = (
            create_engine(
                url,
                poolclass=NullPool,
                connect_args={"connect_timeout": max(2, round(deadline)), "options": "-c statement_timeout=2000"},
            )
            if self.enabled
            else None
        )
        self._probe_started: float | None = None
        self._last_failed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stalled(self) -> bool:
        if not self.enabled:
            return False
        started = self._probe_started
        return self._last_failed or (started is not None and time.monotonic() - started > self.deadline)

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="database-guard", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        engine = self._engine
        while engine is not None and not self._stop.is_set():
            self._probe_started = time.monotonic()
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                failed = False
            except Exception as exc:  # noqa: BLE001 - any failure is an answer: the database is not usable
                failed = True
                log.debug("database probe failed: %s", type(exc).__name__)
            took = time.monotonic() - self._probe_started
            if failed != self._last_failed or took > self.deadline:
                log.warning("database %s (the probe took %.1f s)", "unusable" if failed else "answering", took)
            self._last_failed, self._probe_started = failed, None
            self._stop.wait(self.interval)


def refuse_abandoned_commits(sessions: sessionmaker[Session]) -> None:
    """Every commit on these sessions first checks that its request was not answered 503 meanwhile."""

    def before_commit(_: Session) -> None:
        abandoned = ABANDONED.get()
        if abandoned is not None and abandoned.is_set():
            raise RequestAbandoned("the request was answered 503 while it waited for the database")

    event.listen(sessions, "before_commit", before_commit)


class GuardMiddleware:
    """Pure ASGI: 503 at once while the database is stalled; 503 for a waiting request once it stalls."""

    def __init__(self, app: ASGIApp, *, guard: DatabaseGuard, poll: float = 0.25) -> None:
        self.app = app
        self.guard = guard
        self.poll = poll

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.guard.enabled or scope["path"] in UNGUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.guard.stalled:
            await unavailable(scope, send)
            return
        abandoned = threading.Event()
        started = False
        lock = asyncio.Lock()

        async def guarded_send(message: Message) -> None:
            nonlocal started
            async with lock:
                if abandoned.is_set():
                    return  # the 503 went out: whatever the app says now is dropped
                started = True
                await send(message)

        token = ABANDONED.set(abandoned)
        try:
            task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        finally:
            ABANDONED.reset(token)
        while not task.done():
            await asyncio.wait({task}, timeout=self.poll)
            if not task.done() and self.guard.stalled:
                async with lock:
                    if not started:
                        abandoned.set()
                        await unavailable(scope, send)
                if abandoned.is_set():
                    break  # the app goes on in the background until the database answers; its writes roll back
        if task.done():
            task.result()
        else:
            task.add_done_callback(_log_late_failure)


def _log_late_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("an abandoned request ended with %s", type(task.exception()).__name__)


async def unavailable(scope: Scope, send: Send) -> None:
    content = error_content(scope, DATABASE_UNAVAILABLE, retry_after=RETRY_AFTER_SECONDS)
    await send_json(send, 503, content, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
