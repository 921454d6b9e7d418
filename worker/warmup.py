"""Optional warm-up: load the models named in INPAINT_WARMUP_MODELS before taking any job.

The worker then reports ready only once its pipelines are resident, so the first
job of each model pays no load time. A model that cannot be loaded is logged and
skipped: its jobs will fail with the reason, as without warm-up.
"""

from __future__ import annotations

import logging

from storage.db import session_scope
from storage.errors import JobFailure
from storage.registry import find_model
from storage.settings import Settings
from worker.components import weights_of
from worker.context import WorkerContext

log = logging.getLogger(__name__)


def warm_up(settings: Settings, ctx: WorkerContext) -> None:
    for slug in settings.warmup_models:
        try:
            with session_scope(ctx.sessions) as session:
                spec = find_model(session, slug)
                if spec is None:
                    log.warning("warm-up: no model %r is registered; skipped", slug)
                    continue
                spec = weights_of(session, spec, spec.base_model)  # an SDXL model runs on its base model's
            ctx.pipelines.get(spec)
        except JobFailure as exc:
            log.warning("warm-up: %s", exc.message)
