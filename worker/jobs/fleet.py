"""An inference worker's part in the fleet: its heartbeat, and the admin commands it carries out.

A background thread writes the worker's row in `workers` every
`worker_heartbeat_seconds` (device, free memory, resident models, busy or idle, its
queues, and whether it can load each registered model's weights: worker.engine.availability),
and, when no job is running, carries out the `worker_commands` issued since the
last one it did: `clear_cache` drops every resident model, `evict` the ones
loaded from a source, `load` warms a model up. The job runner also carries them
out before each job, so they happen between jobs, never during one, whatever the
broker (storage.database.fleet explains why this goes through the database).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from storage.database.assets import list_assets
from storage.database.clock import database_now
from storage.database.engine import session_scope
from storage.database.fleet import commands_after, latest_command_id, record_heartbeat, remove_worker
from storage.database.models import WorkerCommand
from storage.database.registry import find_model, list_models
from storage.settings import Settings
from worker.engine.availability import HubProbe, weights_state
from worker.engine.checkpoints import checkpoint_present
from worker.engine.devices import device_memory
from worker.engine.pipelines import PipelineCache
from worker.jobs.sources import weights_of

log = logging.getLogger(__name__)


def resident_set(resident: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    return frozenset((entry["kind"], entry["source"]) for entry in resident)


class FleetMember:
    """This process as the fleet sees it. `busy` is held by the runner for the length of each job."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        pipelines: PipelineCache,
        busy: threading.Lock,
    ) -> None:
        self.settings, self.sessions, self.pipelines, self.busy = settings, sessions, pipelines, busy
        self.name: str | None = None
        self.queues: list[str] = []
        self.hub = HubProbe()
        self.cursor = 0
        self.reported: frozenset[tuple[str, str]] | None = None  # the resident models in the last report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str, *, since: datetime, queues: list[str]) -> None:
        """Join the fleet as `name` (the Celery node name), consuming `queues`. Commands issued before
        `since` (when this process started) are not replayed; those issued while it was starting up are."""
        with session_scope(self.sessions) as session:
            self.cursor = latest_command_id(session, before=since)
        self.name, self.queues = name, queues
        self.report(busy=False)  # commands wait for the heartbeat thread: start-up is not held up
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.name is not None:
            with session_scope(self.sessions) as session:
                remove_worker(session, self.name)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a database blip must not end the heartbeat
                log.exception("heartbeat failed")
            if self._stop.wait(self.settings.worker_heartbeat_seconds):
                return

    def beat(self) -> None:
        """Carry out pending commands if idle, then report."""
        idle = self.busy.acquire(blocking=False)
        try:
            if idle:
                self.apply_commands()
            self.report(busy=not idle)
        finally:
            if idle:
                self.busy.release()

    def report(self, *, busy: bool) -> None:
        if self.name is None:
            return
        resident = self.pipelines.resident()
        memory = device_memory(self.settings.device)
        weights = self.weights({entry["source"] for entry in resident})
        with session_scope(self.sessions) as session:
            record_heartbeat(
                session,
                name=self.name,
                now=database_now(session),
                hostname=socket.gethostname(),
                pid=os.getpid(),
                device=memory.description,
                memory_total=memory.total,
                memory_free=memory.free,
                resident=resident,
                busy=busy,
                command_cursor=self.cursor,
                queues=self.queues,
                weights=weights,
            )
        self.reported = resident_set(resident)

    def weights(self, resident: set[str]) -> dict[str, dict[str, str]]:
        """{source: {state, reason?}} for the weights of every registered model and base model."""
        with session_scope(self.sessions) as session:
            sources = {spec.source for spec in list_models(session) if spec.source}
            sources |= {asset.source for asset in list_assets(session, "base_model")}
        loaded, failed = frozenset(resident), self.pipelines.failed

        def present(source: str) -> bool:
            return checkpoint_present(source, self.settings)

        return {
            s: weights_state(s, resident=loaded, failed=failed, hub=self.hub, checkpoint_present=present).as_json()
            for s in sources
        }

    def report_if_changed(self) -> None:
        """After a job: report at once when it loaded or evicted a model, or a load failed, so that
        verify_model, system_details and the API's serving check see it without waiting for the next beat."""
        if self.name is None or (
            self.reported == resident_set(self.pipelines.resident()) and not self.pipelines.failed.changed()
        ):
            return
        try:
            self.report(busy=False)
        except Exception:  # noqa: BLE001 - the next beat reports it
            log.warning("heartbeat after a job failed", exc_info=True)

    def apply_commands(self) -> None:
        """Carry out the commands after the cursor, in order. The caller holds `busy`."""
        if self.name is None:
            return
        with session_scope(self.sessions) as session:
            commands = commands_after(session, self.cursor)
        for command in commands:
            try:
                ACTIONS[command.action](self, command)
            except Exception:  # noqa: BLE001 - one bad command must not block the next ones
                log.exception("worker command %s (%s) failed", command.id, command.action)
            self.cursor = command.id
        if commands:
            self.report(busy=True)

    def warm_up(self, command: WorkerCommand) -> None:
        """Load a model's pipeline (with its default base model's weights) into the cache; a failed
        load of the same source before is tried again."""
        with session_scope(self.sessions) as session:
            spec = find_model(session, command.target or "")
            if spec is None:
                return
            spec = weights_of(session, spec, spec.base_model)
        self.pipelines.failed.forget(spec.source)
        self.pipelines.get(spec)
        log.info("warmed up model %s", spec.slug)


def clear_cache(member: FleetMember, command: WorkerCommand) -> None:
    member.pipelines.failed.forget()
    log.info("clear_cache: dropped %d resident models", member.pipelines.clear())


def evict(member: FleetMember, command: WorkerCommand) -> None:
    log.info("evict: dropped %d resident models", member.pipelines.evict_source(command.target or ""))


ACTIONS: dict[str, Callable[[FleetMember, WorkerCommand], object]] = {
    "clear_cache": clear_cache,
    "evict": evict,
    "load": FleetMember.warm_up,
}
