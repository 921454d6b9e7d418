"""The response bodies, as OpenAPI documents them.

The routes build their bodies as plain dicts (api.views, storage.wire) and return
them as they are: these models describe those dicts, they never filter or coerce
one (routes name them in `responses=`, not `response_model=`). tests/api/ checks
the two agree, with schemathesis and with real bodies of every job state.

Convention: a key that is left out when it does not apply is typed `X | Omitted`,
which documents it as optional but never null; `X | None` means the key is always
there and may be null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from storage.database.models import JobStatus

Omitted = SkipJsonSchema[None]
"""A key that is absent rather than null: documented as optional, with its own type only."""

Timestamp = Annotated[str, Field(description="ISO 8601, UTC, e.g. 2025-01-31T12:00:00.123456Z.")]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omitted(description: str) -> Any:
    """Field() of an `X | Omitted` key: no default shown, since the key is simply left out."""
    return Field(None, description=description, json_schema_extra=_no_default)


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, or `body` for the whole body.")
    message: str = Field(description="What is wrong, starting with the field's name.")
    limit: Any = Field(description="The limit the value broke, when there is one; else null.")
    value: Any = Field(description="The given value (long strings are cut); null when there is none.")


class Error(BaseModel):
    """Every error body of the native routes: `error`, a sentence a person can act on."""

    error: str
    errors: list[FieldError] | Omitted = omitted("400 only: one entry per invalid field.")
    retry_after: int | Omitted = omitted("Most 429 and 503 answers: whole seconds to wait (as Retry-After).")


class ModelsLabError(BaseModel):
    """An error of the ModelsLab / Stable Diffusion API routes, in their shape."""

    status: Literal["error"]
    message: str
    errors: list[FieldError] | Omitted = omitted("400 only: one entry per invalid field.")
    error: str | Omitted = omitted("A 429 of admission control: the message again, as the native routes name it.")
    retry_after: int | Omitted = omitted("A 429 of admission control: whole seconds to wait (as Retry-After).")


class JobUrls(BaseModel):
    status_url: str = Field(description="GET it to poll the job's status.")
    response_url: str = Field(description="GET it for the result once COMPLETED.")


class SubmitAnswer(JobUrls):
    """POST /v2/{model}: the job is queued."""

    request_id: str
    status: Literal["QUEUED"]
    idempotent_replay: Literal[True] | Omitted = omitted(
        "Present when an Idempotency-Key matched an earlier identical request: no new job was made."
    )


class Progress(BaseModel):
    step: int
    total: int
    percent: float


class Metrics(BaseModel):
    inference_time: float | None = Field(description="Seconds of the worker's own compute.")
    queue_time: float | None = Field(description="Seconds from submit until a worker claimed the job.")


class JobState(JobUrls):
    """A job's status. QUEUED adds queue_position; PROCESSING adds progress and started_at;
    COMPLETED and FAILED add finished_at, expires_at and metrics; FAILED adds error and error_code."""

    request_id: str
    status: JobStatus
    model: str
    created_at: Timestamp
    queue_position: int | Omitted = omitted("QUEUED: jobs ahead of this one.")
    progress: Progress | Omitted = omitted("PROCESSING: denoising steps done.")
    started_at: Timestamp | None | Omitted = omitted("PROCESSING: when a worker claimed it.")
    finished_at: Timestamp | None | Omitted = omitted("COMPLETED or FAILED.")
    expires_at: Timestamp | None | Omitted = omitted("COMPLETED or FAILED: when it is deleted.")
    metrics: Metrics | Omitted = omitted("COMPLETED or FAILED.")
    error: str | None | Omitted = omitted("FAILED: a message safe to show (`cancelled` for a cancelled job).")
    error_code: str | None | Omitted = omitted("FAILED: a stable code, e.g. `model_unavailable`.")


class ListedJob(JobState):
    track_id: str | int | None = Field(description="As given at submit.")


class JobList(BaseModel):
    requests: list[ListedJob] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class Result(BaseModel):
    """GET /v2/requests/{id} of a COMPLETED job."""

    request_id: str
    status: Literal["COMPLETED"]
    model: str
    output: list[str] = Field(description="One per image: a URL valid until expires_at, or base64 PNG.")
    output_format: Literal["url", "base64"]
    seed: int | None = Field(description="The first image's seed.")
    seeds: list[int] = Field(description="One per image.")
    metrics: Metrics
    created_at: Timestamp
    finished_at: Timestamp | None
    expires_at: Timestamp | None
    params: dict[str, Any] = Field(description="The resolved parameters the job ran with.")
    nsfw: list[bool] | None = Field(description="Per image: flagged by the safety checker; null if it did not run.")
    meta: dict[str, Any] = Field(description="The same parameters in the Stable Diffusion API's names.")


class CancelAnswer(BaseModel):
    request_id: str
    cancelled: bool = Field(description="Whether this call cancelled it.")
    outcome: str = Field(description="`cancelled`, or `already_<status>` (lower case) when it had ended.")
    status: JobStatus


class BatchItem(BaseModel):
    """An accepted item has request_id and its URLs; a rejected one http_status and error."""

    index: int
    request_id: str | Omitted = omitted("Accepted items.")
    status_url: str | Omitted = omitted("Accepted items.")
    response_url: str | Omitted = omitted("Accepted items.")
    http_status: int | Omitted = omitted("Rejected items: the status the item alone would have got.")
    error: str | Omitted = omitted("Rejected items.")
    errors: list[FieldError] | Omitted = omitted("Rejected items that failed validation.")


class BatchAnswer(BaseModel):
    batch_id: str
    accepted: int
    rejected: int
    items: list[BatchItem]


class BatchItemState(BatchItem):
    status: str = Field(description="The job's status; REJECTED for a refused item, EXPIRED once deleted.")


class BatchSummary(BaseModel):
    batch_id: str
    total: int
    counts: dict[str, int] = Field(description="Items by status.")
    items: list[BatchItemState]
    done: bool = Field(description="No item is QUEUED or PROCESSING.")
    idempotent_replay: Literal[True] | Omitted = omitted(
        "POST /v2/batch only: an Idempotency-Key matched an earlier identical batch, summarised here."
    )


class SyncImage(BaseModel):
    """POST /v1/{model} with `base64: true`: the images inline."""

    image: str = Field(description="The first image, base64 PNG.")
    status: Literal["COMPLETED"]
    images: list[str]
    seed: int
    seeds: list[int]
    request_id: str
    metrics: dict[str, float | None] = Field(description="inference_time, in seconds.")


class SyncFailed(JobUrls):
    """POST /v1/{model}: the job FAILED."""

    error: str | None
    error_code: str | None
    status: Literal["FAILED"]
    request_id: str


class SyncTimeout(JobUrls):
    """POST /v1/{model}: not done within INPAINT_SYNC_WAIT_SECONDS; collect it from the v2 routes."""

    error: str
    request_id: str


class ModelsLabAnswer(BaseModel):
    """ModelsLab / Stable Diffusion API answer. `success` has generationTime and output; `processing`
    has eta, fetch_result and future_links; `error` (a FAILED job, HTTP 422) has message and error_code."""

    status: Literal["success", "processing", "error"]
    id: int = Field(
        description="The job's integer id, as the hosted APIs answer; the fetch routes take it (or the UUID)."
    )
    output: list[str] = Field(description="URLs, or base64 when asked for; empty unless success.")
    meta: dict[str, Any] = Field(description="The parameters used, in the Stable Diffusion API's names.")
    generationTime: float | None | Omitted = omitted("success: seconds of inference.")  # noqa: N815 - their name
    eta: float | Omitted = omitted("processing: estimated seconds until done.")
    message: str | None | Omitted = omitted("processing or error.")
    fetch_result: str | Omitted = omitted("processing: POST the key here for the outcome.")
    future_links: list[str] | Omitted = omitted("processing: where each image will be, without a key.")
    error_code: str | None | Omitted = omitted("error: a stable code.")


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="database, broker, storage: `ok` or `unreachable (<kind>)`.")


class ModelList(BaseModel):
    models: list[dict[str, Any]] = Field(
        description="Each model's slug, family, sizes and parameter ranges, its size_rule in words, and "
        "`serving`: whether an online worker can serve it now ({state, servable, reason, workers}; state is "
        "loaded, present, download, unknown, failed, missing or no_worker)."
    )


class SchedulerInfo(BaseModel):
    name: str
    class_: str = Field(alias="class", description="The diffusers scheduler class.")
    options: dict[str, Any]
    supported: bool
    reason: str | None = Field(description="Why it is not supported; null when it is.")


class SchedulerList(BaseModel):
    schedulers: list[SchedulerInfo]


class WebhookAttempt(BaseModel):
    number: int
    at: Timestamp | None
    status_code: int | None = Field(description="The endpoint's answer; null when none came.")
    error: str | None
    latency_ms: float


class WebhookEvent(BaseModel):
    webhook_id: str
    type: str
    status: str = Field(description="pending, delivered, failed or disabled.")
    created_at: Timestamp | None
    next_attempt_at: Timestamp | None
    attempts: list[WebhookAttempt]


class WebhookLog(BaseModel):
    request_id: str
    webhook: str | None
    track_id: str | int | None
    events: list[WebhookEvent]


class Redelivery(BaseModel):
    request_id: str
    webhook_id: str
    status: Literal["pending"]


class SecretRotation(BaseModel):
    webhook_secret: str = Field(description="The new secret, shown once.")
    previous_secret_valid_until: Timestamp | None


class ModelsLabBody(BaseModel):
    """Body of the ModelsLab v6 / Stable Diffusion API inpaint routes. Any other field is taken as in
    POST /v2/{model} for the model's family; numbers may be sent as strings, yes/no as "yes"/"no"."""

    model_config = ConfigDict(extra="allow")

    key: str | Omitted = omitted("Your API key, when not sent as x-api-key.")
    model_id: str = Field("sd1.5-inpainting", description="The model slug (GET /v2/models).")
    prompt: str
    negative_prompt: str | None = None
    init_image: str = Field(description="Input image: http(s) URL, base64 or data URI.")
    mask_image: str = Field(description="Mask: white repaints, black keeps.")
    width: int | str | None = None
    height: int | str | None = None
    samples: int | str = 1
    steps: int | str | None = Field(None, description="num_inference_steps.")
    seed: int | str | None = Field(None, description="null (or omitted) draws a random seed.")
    base64: str | bool = Field("no", description='"yes": output inline as base64.')
    instant_response: str | bool = Field("no", description='"yes": answer `processing` at once, without waiting.')
    webhook: str | None = None
    track_id: str | int | None = None


class ModelsLabFetchBody(BaseModel):
    """Body of the ModelsLab / Stable Diffusion API fetch routes."""

    model_config = ConfigDict(extra="allow")

    key: str | Omitted = omitted("Your API key, when not sent as x-api-key.")
    request_id: str | int | Omitted = omitted("The job's id, when the path does not name it (also as `id`).")
