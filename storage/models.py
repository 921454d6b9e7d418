"""ORM models. The schema itself comes from the Alembic migrations alone."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
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


class RegisteredModel(Base):
    """A model slug registered at run time; built-in slugs live in code (storage.registry)."""

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
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class ModelAsset(Base):
    """A named component registered at run time: a base model, ControlNet, LoRA, VAE, embedding,
    depth estimator or safety checker. Built-in names live in code (storage.assets)."""

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
