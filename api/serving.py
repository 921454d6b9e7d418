"""Can a model be served now? The answer the online workers gave, read at most once a second.

Each inference worker reports its queues and, for the weights of every registered model,
whether it can load them (worker.engine.availability). A model is servable when an online
worker consuming its queue has its weights `loaded`, `present` or within reach (`download`).
A source no worker has reported on yet (registered a moment ago) counts as servable: the next
heartbeat says. With `submit_unservable = "refuse"` (the default) a submit to a model that
cannot be served is a 503 naming the reason, instead of a job that is bound to fail or to wait
for a worker that is not there; "accept" queues it (deployments that scale workers from zero).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from storage.contract.assets import AssetCatalog
from storage.contract.params import JobParams
from storage.contract.specs import ModelSpec
from storage.database.clock import database_now
from storage.database.engine import session_scope
from storage.database.fleet import SERVABLE_STATES, WorkerReport, online_workers
from storage.errors import Unavailable

REFRESH_SECONDS = 1.0
RANK = {state: rank for rank, state in enumerate(("loaded", "present", "download", "unknown", "failed", "missing"))}


@dataclass(frozen=True)
class Serving:
    """How a model stands with the online workers: `state` is the best any of them reports."""

    state: str
    """loaded, present, download, unknown (not reported yet), failed, missing, or no_worker."""
    reason: str | None = None
    workers: int = 0
    """Online workers consuming the model's queue."""

    @property
    def servable(self) -> bool:
        return self.state in SERVABLE_STATES or self.state == "unknown"

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "servable": self.servable, "reason": self.reason, "workers": self.workers}


class ServingView:
    """The online workers' reports, cached per API process for REFRESH_SECONDS. Thread-safe."""

    def __init__(self, sessions: sessionmaker[Session], *, stale_after: timedelta) -> None:
        self.sessions = sessions
        self.stale_after = stale_after
        self._lock = threading.Lock()
        self._workers: list[WorkerReport] = []
        self._read_at = -REFRESH_SECONDS

    def workers(self, session: Session | None = None) -> list[WorkerReport]:
        """The reports, read again when older than REFRESH_SECONDS: on `session` when given (a request
        holds one connection at a time), else on a session of its own."""
        with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_SECONDS:
                if session is not None:
                    self._workers = online_workers(session, now=database_now(session), stale_after=self.stale_after)
                else:
                    with session_scope(self.sessions) as own:
                        self._workers = online_workers(own, now=database_now(own), stale_after=self.stale_after)
                self._read_at = time.monotonic()
            return self._workers

    def serving(self, spec: ModelSpec, source: str, session: Session | None = None) -> Serving:
        """How `spec` stands when it runs on the weights at `source` ("" for a family without weights)."""
        reports = [weights for queues, weights in self.workers(session) if spec.queue in queues]
        if not reports:
            reason = f"no inference worker consuming queue {spec.queue!r} is online"
            return Serving("no_worker", reason)
        if not source:
            return Serving("present", workers=len(reports))
        best = min(
            (report.get(source) or {"state": "unknown"} for report in reports),
            key=lambda entry: RANK.get(entry.get("state", ""), len(RANK)),
        )
        return Serving(best.get("state", "unknown"), best.get("reason"), workers=len(reports))


def weights_source(spec: ModelSpec, params: JobParams | None, catalog: AssetCatalog) -> str:
    """Where a job's weights come from: the base model it names (SDXL), else the model's own."""
    base_model = (params.base_model if params else None) or spec.base_model
    if base_model and (asset := catalog.get("base_model", base_model)) is not None:
        return asset.source
    return spec.source


def refuse_unservable(view: ServingView, spec: ModelSpec, source: str, *, base_model: str | None = None) -> None:
    """A 503 naming the reason when no online worker can serve `spec` on `source`; `base_model` is
    the base model the request chose, named first when it is the one that cannot be served."""
    serving = view.serving(spec, source)
    if not serving.servable:
        what = f"model {spec.slug!r}"
        if base_model and serving.state != "no_worker":
            what = f"base_model {base_model!r} of {what}"
        raise Unavailable(f"{what} cannot be served right now: {serving.reason or serving.state}")
