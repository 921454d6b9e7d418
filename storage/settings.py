"""Process configuration, read once per process from the environment.

Nothing here runs at import time: each entry point calls `load_settings()` and
passes the result down. Every variable is `INPAINT_<FIELD>` (upper case), except
`PORT`. The embedded default needs no variables at all: SQLite, a local image
directory and a SQLite-backed Celery broker, all under `INPAINT_DATA_DIR`.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INPAINT_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses placeholder secrets and the loopback switch."
    )
    data_dir: Path = Field(Path("data"), description="Root of the embedded default's files.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir.")
    broker_url: str | None = Field(None, description="Celery broker URL; default SQLite in data_dir.")
    broker_polling_interval: float = Field(
        0.05, gt=0, le=5, description="Seconds between polls of a database broker (embedded)."
    )
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = Field(None, description="Local image directory; default data_dir/blobs.")
    s3_bucket: str = "inpaint-results"
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = Field(
        None, description="Endpoint used in presigned URLs, when clients reach S3 by another name."
    )
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    secret_key: SecretStr | None = Field(
        None, description="Signs local image links. Generated into data_dir in development."
    )
    public_url: str | None = Field(
        None, description="Base of absolute URLs in responses; default: the request's own base URL."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, validation_alias=AliasChoices("PORT", "INPAINT_PORT"))

    result_ttl_seconds: int = Field(3600, ge=1, description="How long results are kept after a job ends.")
    reaper_interval_seconds: float = Field(60.0, gt=0, description="How often expired results are deleted.")
    max_image_pixels: int = Field(
        4096 * 4096, ge=64 * 64, description="Largest input image, in pixels, checked before decoding."
    )
    max_image_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest encoded input image.")
    fetch_timeout_seconds: float = Field(15.0, gt=0, description="Overall deadline for fetching an image URL.")
    allow_loopback_urls: bool = Field(
        False, description="Let image and webhook URLs point at loopback. Tests and local use only."
    )
    bootstrap_api_key: SecretStr | None = Field(
        None, description="A key to create at start-up if it does not exist yet (admin)."
    )

    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress_interval_seconds: float = Field(
        0.25, ge=0, description="Least time between two progress writes of one job."
    )
    log_level: str = "INFO"
    worker_heartbeat_seconds: float = Field(
        5.0, gt=0, le=300, description="How often an inference worker reports itself (system_details) and "
        "picks up admin commands (clear_cache, load_model's warm-up)."
    )
    model_memory_budget_gb: float | None = Field(
        None, gt=0, description="Memory a worker may fill with resident models; the least recently used are "
        "evicted past it. Default: 75% of the device's memory."
    )

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment != "production":
            return self
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if key.lower() in PLACEHOLDER_SECRETS or len(key) < 16:
            raise ValueError("INPAINT_SECRET_KEY must be set to a random value of 16+ characters in production")
        if self.allow_loopback_urls:
            raise ValueError("INPAINT_ALLOW_LOOPBACK_URLS must be off in production")
        return self

    @property
    def result_ttl(self) -> timedelta:
        return timedelta(seconds=self.result_ttl_seconds)

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'inpaint.db').resolve()}"

    @cached_property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @cached_property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "blobs").resolve()

    @cached_property
    def signing_key(self) -> bytes:
        """The key for local image links: configured, or generated once into data_dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".secret_key.{secrets.token_hex(4)}")
            draft.write_text(secrets.token_urlsafe(32))
            draft.chmod(0o600)
            try:
                os.link(draft, path)  # atomic: the first process to start wins
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text().strip().encode()


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
