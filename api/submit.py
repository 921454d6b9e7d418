"""Accepting a job: validate everything at the edge, store the inputs, commit the row, publish.

Order matters. The inputs are stored before the row is committed, so a worker
never sees a job whose inputs are missing; the row is committed before the task
is published, so a worker never receives a task for a row it cannot read.

Credits (one per image) are checked before any image is fetched, and taken by a
conditional UPDATE in the transaction that inserts the row: two submits racing
for the last credits cannot both get them.

`prepare_job` does every check and stores nothing; `accept_job` then stores, records
and publishes one job, and the batch route (api.routes.batch) many, in one transaction.

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
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from api.context import AppContext
from api.edge.admission import Slots
from api.serving import refuse_unservable, weights_source
from storage.blobs.images import ImageInfo, decode_inline, inspect_image, is_url
from storage.blobs.store import in_parallel, input_key, job_prefix, with_retries
from storage.blobs.uploads import UploadReader, owner_tag, parse_upload_link
from storage.broker import publish_job
from storage.contract.assets import AssetCatalog
from storage.contract.content import apply_content_policy
from storage.contract.params import JobParams, resolve_params
from storage.contract.requests import REQUEST_CLASSES, InpaintRequest
from storage.contract.specs import DIFFUSION_FAMILIES, ApiRanges, ModelSpec
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


@dataclass(frozen=True)
class InputImage:
    """An input as sent (the bytes that are stored) and what its header says."""

    data: bytes
    info: ImageInfo


def load_image(
    field: str,
    value: str,
    *,
    policy: FetchPolicy,
    max_bytes: int,
    max_pixels: int,
    fetches: Slots,
    caller: str,
    uploads: UploadReader | None = None,
) -> InputImage:
    """Fetch or base64-decode one input image and check it from its header (format, size, pixel limit);
    the worker decodes it, under the same limits. Every failure is a 400 naming the field. A fetch holds
    one of the caller's image-fetch slots (429 when it has none left) for at most the fetch's deadline.
    An upload link (storage.blobs.uploads) is never fetched: `uploads` reads it from storage, for its key only."""
    link = parse_upload_link(value) if uploads is not None and is_url(value) else None
    if uploads is not None and link is not None:
        data = uploads.read(field, value, link, now=utcnow())
    elif is_url(value):
        try:
            with fetches.held(caller):
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
    return InputImage(data, inspect_image(field, data, max_pixels=max_pixels))


def input_limits(context: AppContext, key: ApiKey) -> dict[str, Any]:
    """load_image()'s keywords for `key`: the service's limits, the key's fetch slots and its uploads."""
    return {
        "policy": context.fetch_policy,
        "max_bytes": context.settings.max_image_bytes,
        "max_pixels": context.settings.max_image_pixels,
        "fetches": context.fetches,
        "caller": f"key-id:{key.id}",
        "uploads": UploadReader(
            owner_tag(key.id, signing_key=context.settings.signing_key),
            blobs=context.blobs,
            signing_key=context.settings.signing_key,
        ),
    }


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
        # Only diffusion families name assets (LoRAs, VAEs, ControlNets...); the others need no catalog.
        catalog = load_catalog(session) if spec is not None and spec.family in DIFFUSION_FAMILIES else AssetCatalog([])
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


def out_of_credits(left: int | None, needed: int) -> OutOfCredits:
    shown = "fewer" if left is None else str(left)
    return OutOfCredits(f"this key is out of credits: {shown} left, this request needs {needed} (one per image)")


@dataclass(frozen=True)
class PreparedJob:
    """A job that passed every check: what is left is to store its inputs, record it and publish it."""

    job_id: str
    spec: ModelSpec
    request: InpaintRequest
    params: JobParams
    images: dict[str, bytes]


def prepare_job(
    context: AppContext,
    *,
    key: ApiKey,
    model: str,
    body: Any,
    defaults: dict[str, Any] | None = None,
    ranges: ApiRanges | None = None,
    not_applied: tuple[str, ...] = (),
    api_format: str | None = None,
) -> PreparedJob:
    """Validate `body` (the JSON value as sent) for `model` and check its images; stores nothing.

    `defaults`: a route's own defaults for fields the body leaves out, where the model's family
    takes the field (the ModelsLab routes default `enhance_prompt` to yes, as that API does).
    `ranges`: the route's API's documented ranges, validated instead of the model's (ApiRanges.apply).
    `not_applied`: fields the route's adapter accepted and dropped; the job's params list them.
    `api_format`: the wire format (None: Segmind); its API decides what a flagged image does by default
    (storage.contract.content).
    """
    spec, catalog = lookup_model(context, model)
    if ranges is not None:
        spec = ranges.apply(spec)
    if defaults and isinstance(body, dict):
        fields = REQUEST_CLASSES[spec.family].model_fields
        body = {**{k: v for k, v in defaults.items() if k in fields}, **body}
    request = parse_request(spec, body)
    if request.webhook is not None:
        check_webhook_url(request.webhook, allow_loopback=context.settings.allow_loopback_urls)
    if key.credits is not None and key.credits < request.samples:
        raise out_of_credits(key.credits, request.samples)
    limits = input_limits(context, key)
    image = load_image("image", request.image, **limits)
    images = {"image": image.data}
    if request.mask is not None:  # none (inpaint-auto): the worker repaints everything
        images["mask"] = load_image("mask", request.mask, **limits).data
    params = resolve_params(request, spec, image_size=image.info.size, rng=context.rng, catalog=catalog)
    params = apply_content_policy(
        params, request, key_action=key.nsfw_action, api_format=api_format, checker=context.settings.safety_checker
    )
    if not_applied:
        params = params.model_copy(update={"ignored": (*params.ignored, *not_applied)})
    if context.settings.submit_unservable == "refuse":
        source = weights_source(spec, params, catalog)
        refuse_unservable(context.serving, spec, source, base_model=params.base_model)
    return PreparedJob(job_id=str(uuid.uuid4()), spec=spec, request=request, params=params, images=images)


def accept_job(
    context: AppContext,
    *,
    key: ApiKey,
    model: str,
    body: Any,
    base_url: str,
    idempotency: Idempotency | None = None,
    api_format: str | None = None,
    defaults: dict[str, Any] | None = None,
    ranges: ApiRanges | None = None,
    not_applied: tuple[str, ...] = (),
) -> AcceptedJob:
    """Validate `body` for `model`, store its inputs, record and publish it (see prepare_job)."""
    if idempotency is not None and (previous := previous_result(context, key, idempotency)):
        return AcceptedJob(job_id=previous, replayed=True)
    job = prepare_job(
        context,
        key=key,
        model=model,
        body=body,
        defaults=defaults,
        ranges=ranges,
        not_applied=not_applied,
        api_format=api_format,
    )
    with log_context(request_id=job.job_id, track_id=job.request.track_id):
        store_inputs(context, [job])
        try:
            with session_scope(context.sessions) as session:
                if not insert_job(session, job, key=key, base_url=base_url, api_format=api_format):
                    raise out_of_credits(None, job.params.samples)
                if idempotency is not None:
                    reserve(
                        session,
                        api_key_id=key.id,
                        key=idempotency.key,
                        digest=idempotency.digest,
                        result_id=job.job_id,
                        now=utcnow(),
                    )
        except IntegrityError:
            discard_inputs(context, [job])
            if idempotency is not None and (previous := previous_result(context, key, idempotency)):
                return AcceptedJob(job_id=previous, replayed=True)  # an identical request won the race
            raise
        except (SQLAlchemyError, OutOfCredits):
            discard_inputs(context, [job])  # no half-written job: its inputs go too
            raise
        log.info("job accepted for %s", job.spec.slug)
        publish_or_defer(context, job.job_id, job.spec.queue)
    return AcceptedJob(job_id=job.job_id)


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


def store_inputs(context: AppContext, jobs: list[PreparedJob]) -> None:
    """Put every job's inputs, all at once. Unavailable (503) if storage is away for 2 s: then none is kept."""
    puts = [
        partial(put_input, context, input_key(job.job_id, role), data)
        for job in jobs
        for role, data in job.images.items()
    ]
    try:
        in_parallel(puts)
    except Unavailable:
        discard_inputs(context, jobs)
        raise Unavailable("object storage cannot be reached right now; nothing was queued, try again") from None


def input_keys(job: PreparedJob) -> dict[str, str]:
    return {role: input_key(job.job_id, role) for role in job.images}


def discard_inputs(context: AppContext, jobs: list[PreparedJob]) -> None:
    for job in jobs:
        try:
            context.blobs.delete_prefix(job_prefix(job.job_id))
        except Exception:  # noqa: BLE001 - best effort; the objects have no row and are never served
            log.warning("could not delete the inputs of a job that was not recorded", extra={"request_id": job.job_id})


def insert_job(
    session: Session,
    job: PreparedJob,
    *,
    key: ApiKey,
    base_url: str,
    batch_id: str | None = None,
    api_format: str | None = None,
) -> bool:
    """Take the job's credits and insert its row, in the caller's transaction. False (nothing
    written) when the key has too few credits left."""
    charged = charge_credits(session, key.id, job.params.samples, limited=key.credits is not None)  # write first
    if charged is None:
        return False
    create_job(
        session,
        job_id=job.job_id,
        api_key_id=key.id,
        model=job.spec.slug,
        queue=job.spec.queue,
        params=job.params.model_dump(mode="json"),
        input_keys=input_keys(job),
        base64_output=job.request.base64,
        now=utcnow(),
        base_url=base_url,
        webhook_url=job.request.webhook,
        track_id=job.request.track_id,
        webhook_events=job.request.webhook_events,
        batch_id=batch_id,
        credits_charged=charged,
        api_format=api_format,
        input_urls={
            role: url for role, url in (("image", job.request.image), ("mask", job.request.mask)) if url and is_url(url)
        },
    )
    return True


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
