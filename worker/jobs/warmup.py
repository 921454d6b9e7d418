"""Optional warm-up: load the models named in INPAINT_WARMUP_MODELS before taking any job.

The worker then reports ready only once its pipelines are resident, so the first
job of each model pays no load time. A model that cannot be loaded is logged and
skipped: its jobs will fail with the reason, as without warm-up.
"""

from __future__ import annotations

import logging

from storage.database.engine import session_scope
from storage.database.registry import find_model
from storage.errors import JobFailure
from worker.jobs.context import InferenceContext
from worker.jobs.sources import weights_of

log = logging.getLogger(__name__)


def warm_up_models(ctx: InferenceContext, slugs: list[str]) -> None:
    for slug in slugs:
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
