"""What an inference worker process builds once and every job uses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from storage.blobs.store import BlobStore
from storage.settings import Settings
from storage.stores import Stores
from worker.engine.checkpoints import CheckpointPolicy
from worker.engine.compiling import CompileOptions
from worker.engine.pipelines import PipelineCache
from worker.jobs.fleet import FleetMember
from worker.jobs.overlap import Finisher, Prefetcher


@dataclass
class InferenceContext:
    settings: Settings
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
    """Stores finished jobs on a side thread (worker.jobs.overlap); None: the job's own thread does."""
    prefetcher: Prefetcher | None = None
    """Reads the next jobs' inputs ahead (worker.jobs.overlap); None: each job reads its own."""

    @classmethod
    def build(cls, settings: Settings, *, publish: Callable[..., None], stores: Stores) -> InferenceContext:
        pipelines = PipelineCache(
            settings.device,
            settings.model_memory_budget_gb,
            compile_options=CompileOptions.from_settings(settings),
            checkpoints=CheckpointPolicy.from_settings(settings),
        )
        busy = threading.Lock()
        return cls(
            settings=settings,
            sessions=stores.sessions,
            blobs=stores.blobs,
            pipelines=pipelines,
            busy=busy,
            fleet=FleetMember(settings, stores.sessions, pipelines, busy),
            publish=publish,
        )

    def overlap(self, on_finished: Callable[[dict[str, str]], None]) -> None:
        """Start the side threads that store finished jobs and read the next jobs' inputs ahead;
        `on_finished({job_id: status})` is called for each job stored."""
        self.finisher = Finisher(on_finished)
        self.prefetcher = Prefetcher(
            self.sessions, self.blobs, capacity=self.settings.max_batch_size, max_pixels=self.settings.max_image_pixels
        )
