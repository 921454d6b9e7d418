"""What a worker process builds once and every task uses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.blobs import BlobStore, make_blob_store
from storage.db import make_engine, make_session_factory
from storage.settings import Settings
from worker.compiling import CompileOptions
from worker.fleet import FleetMember
from worker.overlap import Finisher, Prefetcher
from worker.pipelines import PipelineCache


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    pipelines: PipelineCache
    busy: threading.Lock  # held for the length of each job; admin commands wait for it
    fleet: FleetMember
    publish: Callable[..., None]
    """publish(task_name, *args, queue=None): send a task by name; never raises."""
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the worker is asked to shut down: a running job is given back at its next step."""
    finisher: Finisher | None = None
    """Stores finished jobs on a side thread (worker.overlap); None: the job's own thread does."""
    prefetcher: Prefetcher | None = None
    """Reads the next jobs' inputs ahead (worker.overlap); None: each job reads its own."""

    @classmethod
    def build(cls, settings: Settings, *, publish: Callable[..., None]) -> WorkerContext:
        engine = make_engine(settings.resolved_database_url, pool_size=2, max_overflow=2) \
            if not settings.resolved_database_url.startswith("sqlite") \
            else make_engine(settings.resolved_database_url)
        sessions = make_session_factory(engine)
        pipelines = PipelineCache(settings.device, settings.model_memory_budget_gb,
                                  compile_options=CompileOptions.from_settings(settings))
        busy = threading.Lock()
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            blobs=make_blob_store(settings),
            pipelines=pipelines,
            busy=busy,
            fleet=FleetMember(settings, sessions, pipelines, busy),
            publish=publish,
        )

    def overlap(self, on_finished: Callable[[dict[str, str]], None]) -> None:
        """Start the side threads that store finished jobs and read the next jobs' inputs ahead;
        `on_finished({job_id: status})` is called for each job stored."""
        self.finisher = Finisher(on_finished)
        self.prefetcher = Prefetcher(self.sessions, self.blobs, capacity=self.settings.max_batch_size)
