"""Accepting a job: validate everything at the edge, store the inputs, commit the row, publish.

Order matters. The inputs are stored before the row is committed, so a worker
never sees a job whose inputs are missing; the row is committed before the task
is published, so a worker never receives a task for a row it cannot read.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import ValidationError

from api.context import AppContext
from storage.assets import AssetCatalog
from storage.blobs import input_key
from storage.broker import publish_job
from storage.contract import REQUEST_CLASSES, InpaintRequest, JobParams, resolve_params
from storage.db import session_scope
from storage.errors import InvalidInput, NotFound, Unavailable
from storage.images import decode_inline, encode_png, is_url, open_image, to_mask, to_rgb
from storage.jobs import create_job, fail_job, utcnow
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


def lookup_model(context: AppContext, slug: str) -> tuple[ModelSpec, AssetCatalog]:
    """The model's spec and the registered asset names, or NotFound."""
    with session_scope(context.sessions) as session:
        spec = find_model(session, slug)
        catalog = AssetCatalog.load(session)
    if spec is None:
        raise NotFound(f"unknown model {slug!r}; GET /v2/models lists the models")
    return spec, catalog


def explain_extra(error: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """An unknown field that another family takes says so, instead of just 'not a field'."""
    if error.get("type") != "extra_forbidden" or not error.get("loc"):
        return error
    field = str(error["loc"][0])
    families = [f for f, cls in REQUEST_CLASSES.items() if field in cls.model_fields]
    if families:
        reason = (f"is not accepted by model {spec.slug!r} (family {spec.family}); "
                  f"it applies to {', '.join(families)} models")
        error = {**error, "ctx": {**(error.get("ctx") or {}), "reason": reason}}
    return error


def parse_request(spec: ModelSpec, body: Any) -> InpaintRequest:
    """Validate the body with the request class of the model's family; errors are the usual 400."""
    try:
        return REQUEST_CLASSES[spec.family].model_validate(body)
    except ValidationError as exc:
        errors = [explain_extra(e, spec) for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def load_mask(request: InpaintRequest, image_size: tuple[int, int], limits: dict[str, Any]) -> Image.Image:
    """The mask, thresholded and at the image's size; no mask (inpaint-auto) repaints everything."""
    if request.mask is None:
        return Image.new("L", image_size, 255)
    return to_mask(load_image("mask", request.mask, **limits), image_size)


def accept_job(context: AppContext, *, key: ApiKey, model: str, body: Any) -> AcceptedJob:
    spec, catalog = lookup_model(context, model)
    request = parse_request(spec, body)
    limits = {"policy": context.fetch_policy, "max_bytes": context.settings.max_image_bytes,
              "max_pixels": context.settings.max_image_pixels}
    image = to_rgb(load_image("image", request.image, **limits))
    mask = load_mask(request, image.size, limits)
    params = resolve_params(request, spec, image_size=image.size, rng=context.rng, catalog=catalog)

    job_id = str(uuid.uuid4())
    keys = {"image": input_key(job_id, "image"), "mask": input_key(job_id, "mask")}
    context.blobs.put(keys["image"], encode_png(image))
    context.blobs.put(keys["mask"], encode_png(mask))

    now = utcnow()
    with session_scope(context.sessions) as session:
        create_job(
            session,
            job_id=job_id,
            api_key_id=key.id,
            model=spec.slug,
            queue=spec.queue,
            params=params.model_dump(mode="json"),
            input_keys=keys,
            base64_output=request.base64,
            now=now,
        )
    try:
        publish_job(context.celery, job_id, queue=spec.queue)
    except Exception:
        log.exception("could not publish job", extra={"request_id": job_id})
        with session_scope(context.sessions) as session:
            fail_job(session, job_id, code="broker_unavailable", message="the job queue could not be reached",
                     now=utcnow(), ttl=context.settings.result_ttl)
        raise Unavailable("the job queue cannot be reached right now; nothing was queued, try again") from None
    return AcceptedJob(job_id=job_id, params=params)
