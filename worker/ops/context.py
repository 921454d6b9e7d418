"""What the ops side (webhooks, sweeper, retention) needs from its process: no pipelines, no engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from storage.blobs.store import BlobStore
from storage.settings import Settings
from storage.stores import Stores


@dataclass(frozen=True)
class OpsContext:
    settings: Settings
    sessions: sessionmaker[Session]
    blobs: BlobStore
    publish: Callable[..., None]
    """publish(task_name, *args, queue=None): send a task by name; never raises."""

    @classmethod
    def build(cls, settings: Settings, *, publish: Callable[..., None], stores: Stores) -> OpsContext:
        return cls(settings=settings, sessions=stores.sessions, blobs=stores.blobs, publish=publish)
