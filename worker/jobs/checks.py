"""The Stable Diffusion API enterprise `nsfw_image_check`, on an inference worker: the registered
safety checker's verdict on one stored image (storage.blobs.checks says where both lie).

A check is not a job: it has no row, costs no credit and is not retried. Whatever happens, a verdict
is written, so the API that waits for it answers at once: `{"nsfw": bool, "checker": name}`, or
`{"error_code", "error"}` (`invalid_input` for an image that cannot be decoded, `model_unavailable`
for a checker that is not registered or cannot load, `internal_error` for anything else, logged).
"""

from __future__ import annotations

import logging
from typing import Any

from storage.blobs.checks import check_image_key, put_verdict
from storage.blobs.store import with_retries
from storage.contract.assets import DEFAULT_SAFETY_CHECKER
from storage.database.engine import session_scope
from storage.errors import JobFailure, NotFound
from worker.engine.components import flag_images
from worker.jobs.context import InferenceContext
from worker.jobs.inputs import decode_inputs
from worker.jobs.sources import named_asset

log = logging.getLogger(__name__)


def run_check(ctx: InferenceContext, check_id: str) -> dict[str, Any] | None:
    """Check the stored image and write the verdict; None when the image is gone (reaped: nobody waits)."""
    try:
        data = with_retries(lambda: ctx.blobs.get(check_image_key(check_id)), budget=2.0, what="reading a check")
    except NotFound:
        log.warning("image check has no image (expired)", extra={"request_id": check_id})
        return None
    with ctx.busy:  # the resident models are used by one job or check at a time
        verdict = verdict_of(ctx, data)
    with_retries(lambda: put_verdict(ctx.blobs, check_id, verdict), budget=5.0, what="storing a verdict")
    log.info("image checked", extra={"request_id": check_id, **verdict})
    return verdict


def verdict_of(ctx: InferenceContext, data: bytes) -> dict[str, Any]:
    try:
        image, _ = decode_inputs(data, None, max_pixels=ctx.settings.max_image_pixels)
        with session_scope(ctx.sessions) as session:
            checker = named_asset(session, "safety_checker", DEFAULT_SAFETY_CHECKER, "safety checker")
        (flagged,) = flag_images(ctx.pipelines, checker, [image])
    except JobFailure as failure:
        return {"error_code": failure.code, "error": failure.message}
    except Exception:  # noqa: BLE001 - reported to the waiting client as a failure, with the traceback in the log
        log.exception("image check failed")
        return {"error_code": "internal_error", "error": "the safety checker failed on the worker; see its log"}
    return {"nsfw": bool(flagged), "checker": checker.name}
