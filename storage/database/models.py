"""ORM models. The schema itself comes from the Alembic migrations alone."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class JobStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), comment="First characters, to tell keys apart.")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, comment="sha256 hex of the key.")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    webhook_secret: Mapped[str] = mapped_column(String(100), comment="whsec_...: signs this key's webhooks.")
    webhook_secret_previous: Mapped[str | None] = mapped_column(String(100))
    webhook_secret_previous_until: Mapped[datetime | None] = mapped_column(
        comment="Until then, deliveries carry a signature with the previous secret too."
    )

    allowed_models: Mapped[list[Any] | None] = mapped_column(comment="Model slugs this key may use; NULL: all.")
    credits: Mapped[int | None] = mapped_column(Integer, comment="Images this key may still make; NULL: no limit.")
    rate_limit_per_minute: Mapped[int | None] = mapped_column(
        Integer, comment="Submits per minute; NULL: the configured default; 0: no limit."
    )
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer, comment="Bucket size; NULL: the default.")
    nsfw_action: Mapped[str | None] = mapped_column(
        String(16),
        comment="What an image the safety checker flags does: block (the job fails) or replace; "
        "NULL: the route's API's semantics.",
    )
    bucket_tokens: Mapped[float | None] = mapped_column(
        Float, comment="Token bucket when it is kept in the database: tokens at bucket_updated_at."
    )
    bucket_updated_at: Mapped[float | None] = mapped_column(Float, comment="Unix seconds.")


class RegisteredModel(Base):
    """A model slug registered at run time; built-in slugs live in code (storage.contract.specs)."""

    __tablename__ = "models"

    slug: Mapped[str] = mapped_column(String(100), primary_key=True)
    family: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(Text, comment="Hub id or local directory.")
    options: Mapped[dict[str, Any]] = mapped_column(comment="Limits and defaults (ModelSpec fields).")
    created_at: Mapped[datetime]


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_queue_created", "status", "queue", "created_at"),
        Index("ix_jobs_expires_at", "expires_at"),
        Index("ix_jobs_api_key_created", "api_key_id", "created_at"),
        Index("ix_jobs_webhook_state", "webhook_state"),
        Index("ix_jobs_batch", "batch_id"),
        Index("ix_jobs_model_status_error", "model", "status", "error_code"),
        Index("ix_jobs_finished_at", "finished_at"),
        UniqueConstraint("number", name="uq_jobs_number"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    model: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(comment="The resolved JobParams (storage.contract), seed drawn.")
    input_keys: Mapped[dict[str, Any]] = mapped_column(comment="Blob keys of the stored inputs, by role.")
    base64_output: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]

    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)

    output_keys: Mapped[list[Any] | None] = mapped_column(comment="Blob keys of the results, in order.")
    output_seeds: Mapped[list[Any] | None]
    nsfw: Mapped[list[Any] | None] = mapped_column(
        comment="Per output: flagged by the safety checker; null when it did not run."
    )
    inference_time: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, comment="Claims so far; the current one's token.")
    credits_charged: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        comment="Credits taken at submit; given back if the job FAILS.",
    )
    heartbeat_at: Mapped[datetime | None] = mapped_column(comment="Last sign of life of the attempt running it.")
    published_at: Mapped[datetime | None] = mapped_column(
        comment="When its task was last sent to the broker; None: the send failed."
    )

    base_url: Mapped[str | None] = mapped_column(String(300), comment="Base of URLs made for this job.")
    webhook_url: Mapped[str | None] = mapped_column(Text)
    track_id: Mapped[Any] = mapped_column(JSON, nullable=True, comment="Returned as given: string or integer.")
    webhook_events: Mapped[list[Any] | None] = mapped_column(comment="Extra events asked for, e.g. progress.")
    webhook_state: Mapped[str | None] = mapped_column(
        String(16), comment="pending: the terminal event is still to be created; created: it exists."
    )
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), comment="The batch it came in, if any.")
    api_format: Mapped[str | None] = mapped_column(
        String(16), comment="The wire format it was submitted in (None: Segmind v2; modelslab); shapes its webhooks."
    )
    number: Mapped[int] = mapped_column(
        Integer,
        comment="Integer id shown on the ModelsLab and Stable Diffusion API routes (from job_numbers).",
    )
    input_urls: Mapped[dict[str, Any] | None] = mapped_column(
        comment="The input images' URLs as sent, by role; inline (base64) inputs are not kept."
    )


class JobNumber(Base):
    """Hands out the jobs' integer ids: inserting a row draws the next `number` (never reused)."""

    __tablename__ = "job_numbers"
    __table_args__ = (UniqueConstraint("job_id", name="uq_job_numbers_job_id"), {"sqlite_autoincrement": True})

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), comment="The job given this number.")


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime]
    items: Mapped[list[Any]] = mapped_column(comment="Per item: request_id, or the error that rejected it.")


class IdempotencyKey(Base):
    """An Idempotency-Key seen on a submit route: the same key and body return the original result."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), comment="sha256 of the route and canonical body.")
    result_id: Mapped[str] = mapped_column(String(36), comment="The request_id (or batch_id) it created.")
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event for one job. Its id is the `webhook-id` header, the same on every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_job", "job_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text, comment="The exact bytes sent, so every attempt signs the same body.")
    terminal: Mapped[bool] = mapped_column(Boolean, comment="Terminal events are retried; progress events never.")
    status: Mapped[str] = mapped_column(String(16), comment="pending, delivered, failed or disabled.")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None] = mapped_column(comment="When a delivery task was last published.")
    lease_until: Mapped[datetime | None] = mapped_column(comment="A delivery attempt holds the row until then.")
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Float)


class DisabledEndpoint(Base):
    """A webhook URL that answered 410 Gone: no more deliveries to it for this key."""

    __tablename__ = "webhook_disabled_endpoints"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    url_hash: Mapped[str] = mapped_column(String(64), primary_key=True, comment="sha256 hex of the URL.")
    url: Mapped[str] = mapped_column(Text)
    disabled_at: Mapped[datetime]


class Counter(Base):
    """A durable, monotonic count of events no row records (sweeper and reaper actions)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(200), primary_key=True, comment="What is counted, e.g. sweeper_requeued.")
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ModelAsset(Base):
    """A named component registered at run time: a base model, ControlNet, LoRA, VAE, embedding,
    depth estimator or safety checker. Built-in names live in code (storage.contract.assets)."""

    __tablename__ = "model_assets"

    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    source: Mapped[str] = mapped_column(Text, comment="Hub id, local directory or local file.")
    options: Mapped[dict[str, Any]] = mapped_column(comment="Kind-specific options (storage.assets).")
    created_at: Mapped[datetime]


class WorkerRecord(Base):
    """One inference worker process, as it last reported itself (a heartbeat every few seconds)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(200), comment="e.g. 'cuda:0 (NVIDIA H100)' or 'cpu'.")
    memory_total: Mapped[int | None] = mapped_column(BigInteger, comment="Bytes on the device.")
    memory_free: Mapped[int | None] = mapped_column(BigInteger, comment="Bytes free on the device.")
    resident: Mapped[list[Any]] = mapped_column(comment="Models held in memory: [{kind, source, bytes}].")
    queues: Mapped[list[Any]] = mapped_column(default=list, server_default="[]", comment="The queues it consumes.")
    weights: Mapped[dict[str, Any]] = mapped_column(
        default=dict,
        server_default="{}",
        comment="Whether it can load each registered source: {source: {state, reason?}}.",
    )
    busy: Mapped[bool] = mapped_column(Boolean, default=False)
    command_cursor: Mapped[int] = mapped_column(Integer, default=0, comment="Last worker_commands id done.")
    started_at: Mapped[datetime]
    last_seen: Mapped[datetime]


class WorkerCommand(Base):
    """A request to every inference worker (clear_cache, load), acted on between jobs, in id order."""

    __tablename__ = "worker_commands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(Text, comment="A model slug (load) or a source (evict).")
    created_at: Mapped[datetime]
