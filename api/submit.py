"""Accepting a job: validate everything at the edge, store the inputs, commit the row, publish.

Order matters. The inputs are stored before the row is committed, so a worker
never sees a job whose inputs are missing; the row is committed before the task
is published, so a worker never receives a task for a row it cannot read.

Credits (one per image) are checked before any image is fetched, and taken by a
conditional UPDATE in the transaction that inserts the row: two submits racing
for the last credits cannot both get them.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from PIL import Image

from api.context import AppContext
from storage.blobs import input_key, job_prefix
from storage.broker import publish_job
from storage.contract import InpaintRequest, JobParams, resolve_params
from storage.db import session_scope
from storage.errors import InvalidInput, NotFound, OutOfCredits, Unavailable
from storage.images import decode_inline, encode_png, is_url, open_image, to_mask, to_rgb
from storage.jobs import create_job, fail_job, utcnow
from storage.keys import charge_credits
from storage.models import ApiKey
from storage.registry import ModelSpec, find_model
from storage.safe_fetch import FetchError, FetchPolicy, fetch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcceptedJob:
    job_id: str
    params: JobParams


def load_image(field: str, value: str, *, policy: FetchPolicy, max_bytes: int, max_pixels: int) -> Image.Image:
    """Fetch or decode one input image; every failure is a 400 naming the field."""
    if is_url(value):
        try:
            result = fetch(value, policy)
        except FetchError as exc:
            raise InvalidInput(field, f"could not be fetched: {exc.message}", value=value) from None
        if result.status_code != 200:
            raise InvalidInput(field, f"could not be fetched: the server answered HTTP {result.status_code}",
                               value=value)
        data = result.body
    else:
        data = decode_inline(field, value)
    if len(data) > max_bytes:
        raise InvalidInput(field, f"is {len(data)} bytes, more than the limit of {max_bytes}", limit=max_bytes,
                           value=len(data))
    return open_image(field, data, max_pixels=max_pixels)


def lookup_model(context: AppContext, slug: str) -> ModelSpec:
    with session_scope(context.sessions) as session:
        spec = find_model(session, slug)
    if spec is None:
        raise NotFound(f"unknown model {slug!r}; GET /v2/models lists the models")
    return spec


def out_of_credits(left: int | None, needed: int) -> OutOfCredits:
    shown = "fewer" if left is None else str(left)
    return OutOfCredits(f"this key is out of credits: {shown} left, this request needs {needed} "
                        "(one per image)")


def accept_job(context: AppContext, *, key: ApiKey, model: str, request: InpaintRequest) -> AcceptedJob:
    spec = lookup_model(context, model)
    if key.credits is not None and key.credits < request.samples:
        raise out_of_credits(key.credits, request.samples)
    limits = {"policy": context.fetch_policy, "max_bytes": context.settings.max_image_bytes,
              "max_pixels": context.settings.max_image_pixels}
    image = to_rgb(load_image("image", request.image, **limits))
    mask = to_mask(load_image("mask", request.mask, **limits), image.size)
    params = resolve_params(request, spec, image_size=image.size, rng=context.rng)

    job_id = str(uuid.uuid4())
    keys = {"image": input_key(job_id, "image"), "mask": input_key(job_id, "mask")}
    context.blobs.put(keys["image"], encode_png(image))
    context.blobs.put(keys["mask"], encode_png(mask))

    try:
        with session_scope(context.sessions) as session:
            charged = charge_credits(session, key.id, params.samples)  # the write comes first
            if charged is None:
                raise out_of_credits(None, params.samples)
            create_job(
                session,
                job_id=job_id,
                api_key_id=key.id,
                model=spec.slug,
                queue=spec.queue,
                params=params.model_dump(mode="json"),
                input_keys=keys,
                base64_output=request.base64,
                now=utcnow(),
                credits_charged=charged,
            )
    except OutOfCredits:
        context.blobs.delete_prefix(job_prefix(job_id))
        raise
    try:
        publish_job(context.celery, job_id, queue=spec.queue)
    except Exception:
        log.exception("could not publish job", extra={"request_id": job_id})
        with session_scope(context.sessions) as session:
            fail_job(session, job_id, code="broker_unavailable", message="the job queue could not be reached",
                     now=utcnow(), ttl=context.settings.result_ttl)
        raise Unavailable("the job queue cannot be reached right now; nothing was queued, try again") from None
    return AcceptedJob(job_id=job_id, params=params)
