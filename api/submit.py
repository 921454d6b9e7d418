"""Accepting a job: validate everything at the edge, store the inputs, commit the row, publish.

Order matters. The inputs are stored before the row is committed, so a worker
never sees a job whose inputs are missing; the row is committed before the task
is published, so a worker never receives a task for a row it cannot read.

Credits (one per image) are checked before any image is fetched, and taken by a
conditional UPDATE in the transaction that inserts the row: two submits racing
for the last credits cannot both get them.

Every submit route hands over the body as sent (a JSON value); it is validated
here with the request class of the named model's family (`REQUEST_CLASSES`), so
a field is accepted exactly where that family applies it.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from api.context import AppContext
from storage.blobs.images import decode_inline, encode_png, is_url, open_image, to_mask, to_rgb
from storage.blobs.store import in_parallel, input_key, job_prefix, with_retries
from storage.broker import publish_job
from storage.contract.assets import AssetCatalog
from storage.contract.params import JobParams, resolve_params
from storage.contract.requests import REQUEST_CLASSES, InpaintRequest
from storage.contract.specs import ModelSpec
from storage.database.assets import load_catalog
from storage.database.engine import session_scope
from storage.database.idempotency import find_previous, request_hash, reserve
from storage.database.jobs import create_job, mark_published, utcnow
from storage.database.keys import charge_credits
from storage.database.models import ApiKey
from storage.database.registry import find_model
from storage.egress.fetch import FetchError, FetchPolicy, fetch, is_public, parse_url
from storage.errors import InvalidInput, NotFound, OutOfCredits, Unavailable
from storage.logs import log_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcceptedJob:
    job_id: str
    replayed: bool = False
    """True when an Idempotency-Key matched an earlier identical request: no new job was made."""


@dataclass(frozen=True)
class Idempotency:
    key: str
    digest: str


def load_image(field: str, value: str, *, policy: FetchPolicy, max_bytes: int, max_pixels: int) -> Image.Image:
    """Fetch or decode one input image; every failure is a 400 naming the field."""
    if is_url(value):
        try:
            result = fetch(value, policy)
        except FetchError as exc:
            raise InvalidInput(field, f"could not be fetched: {exc.message}", value=value) from None
        if result.status_code != 200:
            raise InvalidInput(
                field, f"could not be fetched: the server answered HTTP {result.status_code}", value=value
            )
        data = result.body
    else:
        data = decode_inline(field, value)
    if len(data) > max_bytes:
        raise InvalidInput(
            field, f"is {len(data)} bytes, more than the limit of {max_bytes}", limit=max_bytes, value=len(data)
        )
    return open_image(field, data, max_pixels=max_pixels)


def check_webhook_url(url: str, *, allow_loopback: bool) -> str:
    """http(s) and well formed; an IP-literal host must be public. Names are checked again at delivery."""
    try:
        parsed = parse_url(url)
    except FetchError as exc:
        raise InvalidInput("webhook", exc.message, value=url) from None
    try:
        literal = ipaddress.ip_address(parsed.host)
    except ValueError:
        return url
    if not is_public(literal, allow_loopback=allow_loopback):
        raise InvalidInput("webhook", "must point at a public address", value=url)
    return url


def lookup_model(context: AppContext, slug: str) -> tuple[ModelSpec, AssetCatalog]:
    """The model's spec and the registered asset names, or NotFound."""
    with session_scope(context.sessions) as session:
        spec = find_model(session, slug)
        catalog = load_catalog(session)
    if spec is None:
        raise NotFound(f"unknown model {slug!r}; GET /v2/models lists the models")
    return spec, catalog


def explain_extra(error: Mapping[str, Any], spec: ModelSpec) -> Mapping[str, Any]:
    """An unknown field that another family takes says so, instead of just 'not a field'."""
    if error.get("type") != "extra_forbidden" or not error.get("loc"):
        return error
    field = str(error["loc"][0])
    families = [f for f, cls in REQUEST_CLASSES.items() if field in cls.model_fields]
    if families:
        reason = (
            f"is not accepted by model {spec.slug!r} (family {spec.family}); it applies to {', '.join(families)} models"
        )
        error = {**error, "ctx": {**(error.get("ctx") or {}), "reason": reason}}
    return error


def parse_request(spec: ModelSpec, body: Any) -> InpaintRequest:
    """Validate the body with the request class of the model's family.

    Raises RequestValidationError (the usual 400, one entry per field); the batch and
    ModelsLab routes turn its `errors()` into their own shapes.
    """
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


def out_of_credits(left: int | None, needed: int) -> OutOfCredits:
    shown = "fewer" if left is None else str(left)
    return OutOfCredits(f"this key is out of credits: {shown} left, this request needs {needed} (one per image)")


def accept_job(
    context: AppContext,
    *,
    key: ApiKey,
    model: str,
    body: Any,
    base_url: str,
    idempotency: Idempotency | None = None,
    batch_id: str | None = None,
    api_format: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> AcceptedJob:
    """Validate `body` (the JSON value as sent) for `model`, store its inputs, record and publish it.

    `defaults`: a route's own defaults for fields the body leaves out, where the model's family
    takes the field (the ModelsLab routes default `enhance_prompt` to yes, as that API does).
    """
    if idempotency is not None and (previous := previous_result(context, key, idempotency)):
        return AcceptedJob(job_id=previous, replayed=True)
    spec, catalog = lookup_model(context, model)
    if defaults and isinstance(body, dict):
        fields = REQUEST_CLASSES[spec.family].model_fields
        body = {**{k: v for k, v in defaults.items() if k in fields}, **body}
    request = parse_request(spec, body)
    if request.webhook is not None:
        check_webhook_url(request.webhook, allow_loopback=context.settings.allow_loopback_urls)
    if key.credits is not None and key.credits < request.samples:
        raise out_of_credits(key.credits, request.samples)
    limits: dict[str, Any] = {
        "policy": context.fetch_policy,
        "max_bytes": context.settings.max_image_bytes,
        "max_pixels": context.settings.max_image_pixels,
    }
    image = to_rgb(load_image("image", request.image, **limits))
    mask = load_mask(request, image.size, limits)
    params = resolve_params(request, spec, image_size=image.size, rng=context.rng, catalog=catalog)

    job_id = str(uuid.uuid4())
    with log_context(request_id=job_id, track_id=request.track_id):
        return store_and_record(
            context,
            job_id,
            key=key,
            spec=spec,
            request=request,
            params=params,
            base_url=base_url,
            images={"image": encode_png(image), "mask": encode_png(mask)},
            idempotency=idempotency,
            batch_id=batch_id,
            api_format=api_format,
        )


def store_and_record(
    context: AppContext,
    job_id: str,
    *,
    key: ApiKey,
    spec: ModelSpec,
    request: InpaintRequest,
    params: JobParams,
    base_url: str,
    images: dict[str, bytes],
    idempotency: Idempotency | None,
    batch_id: str | None,
    api_format: str | None,
) -> AcceptedJob:
    """Store the inputs, commit the row, publish; every log line inside names the job and its track_id."""
    keys = store_inputs(context, job_id, images)
    try:
        record_job(
            context,
            job_id,
            key=key,
            spec=spec,
            request=request,
            params=params,
            keys=keys,
            base_url=base_url,
            idempotency=idempotency,
            batch_id=batch_id,
            api_format=api_format,
        )
    except IntegrityError:
        discard_inputs(context, job_id)
        if idempotency is not None and (previous := previous_result(context, key, idempotency)):
            return AcceptedJob(job_id=previous, replayed=True)  # an identical request won the race
        raise
    except (SQLAlchemyError, OutOfCredits):
        discard_inputs(context, job_id)  # no half-written job: its inputs go too
        raise
    log.info("job accepted for %s", spec.slug)
    publish_or_defer(context, job_id, spec.queue)
    return AcceptedJob(job_id=job_id)


def idempotency_of(header: str | None, route: str, body: Any) -> Idempotency | None:
    """The Idempotency-Key header with a digest of the route and the JSON body (key order and
    whitespace do not matter; the body is validated later, for the model it names)."""
    if not header:
        return None
    return Idempotency(key=header, digest=request_hash(route, body))


def previous_result(context: AppContext, key: ApiKey, idempotency: Idempotency) -> str | None:
    with session_scope(context.sessions) as session:
        return find_previous(session, api_key_id=key.id, key=idempotency.key, digest=idempotency.digest, now=utcnow())


def put_input(context: AppContext, key: str, data: bytes) -> None:
    with_retries(lambda: context.blobs.put(key, data), budget=2.0, what="storing inputs")


def store_inputs(context: AppContext, job_id: str, data: dict[str, bytes]) -> dict[str, str]:
    """Put the re-encoded inputs; keys by role. Unavailable (503) if storage is away for 2 s."""
    keys = {role: input_key(job_id, role) for role in data}
    try:
        in_parallel([partial(put_input, context, key, data[role]) for role, key in keys.items()])
    except Unavailable:
        discard_inputs(context, job_id)
        raise Unavailable("object storage cannot be reached right now; nothing was queued, try again") from None
    return keys


def discard_inputs(context: AppContext, job_id: str) -> None:
    try:
        context.blobs.delete_prefix(job_prefix(job_id))
    except Exception:  # noqa: BLE001 - best effort; the objects have no row and are never served
        log.warning("could not delete the inputs of a job that was not recorded", extra={"request_id": job_id})


def record_job(
    context: AppContext,
    job_id: str,
    *,
    key: ApiKey,
    spec: ModelSpec,
    request: InpaintRequest,
    params: JobParams,
    keys: dict[str, str],
    base_url: str,
    idempotency: Idempotency | None,
    batch_id: str | None,
    api_format: str | None,
) -> None:
    """The credits, the job row and its Idempotency-Key if any, in one transaction."""
    now = utcnow()
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
            now=now,
            base_url=base_url,
            webhook_url=request.webhook,
            track_id=request.track_id,
            webhook_events=request.webhook_events,
            batch_id=batch_id,
            credits_charged=charged,
            api_format=api_format,
        )
        if idempotency is not None:
            reserve(
                session, api_key_id=key.id, key=idempotency.key, digest=idempotency.digest, result_id=job_id, now=now
            )


def publish_or_defer(context: AppContext, job_id: str, queue: str) -> None:
    """Send the task. The row is committed, so the job is accepted either way: if the broker is
    away, the sweeper publishes it once the broker is back."""
    try:
        publish_job(context.celery, job_id, queue=queue)
    except Exception:  # noqa: BLE001 - any broker failure is deferred, never lost
        log.warning("could not publish job; the sweeper will", exc_info=True, extra={"request_id": job_id})
        try:
            with session_scope(context.sessions) as session:
                mark_published(session, [job_id], at=None)
        except SQLAlchemyError:
            log.warning(
                "could not mark the job unpublished; the sweeper's queue-depth check will find it",
                extra={"request_id": job_id},
            )
