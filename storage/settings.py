"""Process configuration, read once per process from the environment.

Nothing here runs at import time: each entry point calls `load_settings()` and
passes the result down. Every variable is `INPAINT_<FIELD>` (upper case), except
`PORT`. The embedded default needs no variables at all: SQLite, a local image
directory and a SQLite-backed Celery broker, all under `INPAINT_DATA_DIR`.

A secret (a `SecretStr` field) may instead be read from a file named by
`INPAINT_<FIELD>_FILE`, the Docker and Kubernetes secrets convention: `SecretFiles`
is that settings source. Errors never quote a secret (`hide_input_in_errors`).
"""

from __future__ import annotations

import os
import secrets
import typing
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development"}
FILE_SUFFIX = "_FILE"
"""INPAINT_<FIELD>_FILE names a file holding the secret INPAINT_<FIELD> (SecretFiles)."""
MAX_COMPILE_SIDE = 4096
"""The largest side of any built-in model (erase); the diffusion models stop at 1024."""


def parse_size(entry: str) -> tuple[int, int]:
    """'768x512' -> (768, 512): width, then height."""
    width, sep, height = entry.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise ValueError(f"INPAINT_COMPILE_SIZES: {entry!r} is not WIDTHxHEIGHT, e.g. 768x512")
    return int(width), int(height)


def is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)


def read_secret_file(variable: str, path: str) -> str:
    """The file's text with one trailing newline stripped; an error names the variable and the path,
    never the content."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path!r}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}: {path!r} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text


class SecretFiles(PydanticBaseSettingsSource):
    """Secrets from the files named by INPAINT_<FIELD>_FILE (Docker and Kubernetes secrets).

    Setting both INPAINT_<FIELD> and INPAINT_<FIELD>_FILE is an error naming both: which one
    wins would otherwise be a guess.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = {name.upper(): value for name, value in environ.items()}
        self.prefix = str(settings_cls.model_config.get("env_prefix", "")).upper()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"{self.prefix}{field_name}".upper()
        path = self.environ.get(variable + FILE_SUFFIX)
        if path is None:
            return None, field_name, False
        if variable in self.environ:
            raise SettingsError(f"{variable} and {variable}{FILE_SUFFIX} are both set; set only one of them")
        return read_secret_file(variable + FILE_SUFFIX, path), field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if is_secret(field):
                value, key, _ = self.get_field_value(field, name)
                if value is not None:
                    found[key] = value
        return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INPAINT_", extra="ignore", hide_input_in_errors=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit overrides, then the environment, then the INPAINT_<FIELD>_FILE secrets."""
        secret_files = SecretFiles(settings_cls, dict(os.environ))
        return init_settings, env_settings, secret_files, dotenv_settings, file_secret_settings

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses to start with a missing or placeholder INPAINT_SECRET_KEY (under 16 "
        "characters, or one like `changeme`) or with INPAINT_ALLOW_LOOPBACK_URLS on.",
    )
    data_dir: Path = Field(
        Path("data"),
        description="Root of the embedded default's files: the SQLite database and broker, the image "
        "directory, the generated secret key and beat's schedule. A relative path is taken from the "
        "working directory.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the job database, e.g. `postgresql+psycopg://user:pw@host/db`; "
        "default: SQLite, INPAINT_DATA_DIR/inpaint.db.",
    )
    database_password: SecretStr | None = Field(
        None,
        description="Password of the job database, put into INPAINT_DATABASE_URL, which then carries none "
        "(so the URL can sit in plain configuration); an error with the embedded SQLite default.",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL, e.g. `redis://host:6379/0`; default: a SQLite database, "
        "INPAINT_DATA_DIR/broker.db, through kombu's SQLAlchemy transport.",
    )
    broker_polling_interval: float = Field(
        0.05, gt=0, le=5, description="Seconds between polls of a database broker (embedded)."
    )
    storage_backend: Literal["local", "s3"] = Field(
        "local", description="Where inputs and results are kept: `local` (a directory) or `s3`."
    )
    storage_dir: Path | None = Field(
        None, description="Local image directory (backend `local`); default: INPAINT_DATA_DIR/blobs."
    )
    s3_bucket: str = Field("inpaint-results", description="Bucket for inputs and results (backend `s3`).")
    s3_endpoint_url: str | None = Field(None, description="Any S3-compatible endpoint (MinIO, ...); unset: AWS S3.")
    s3_public_endpoint_url: str | None = Field(
        None,
        description="Endpoint used in presigned URLs, when clients reach S3 by another name; "
        "unset: INPAINT_S3_ENDPOINT_URL.",
    )
    s3_region: str = Field("us-east-1", description="Region of the S3 client.")
    s3_access_key_id: str | None = Field(
        None, description="S3 access key id; unset: boto3's own credential chain (environment, files, role)."
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="S3 secret access key; unset: boto3's own credential chain."
    )

    secret_key: SecretStr | None = Field(
        None,
        description="Signs image links (local files and the ModelsLab routes' `future_links`). Required in "
        "production; unset in development: generated once into INPAINT_DATA_DIR/secret_key.",
    )
    public_url: str | None = Field(
        None, description="Base of absolute URLs in responses; default: the request's own base URL."
    )
    host: str = Field("127.0.0.1", description="Address `inpaint-api` listens on (its `--host` overrides it).")
    port: int = Field(
        8000,
        validation_alias=AliasChoices("PORT", "INPAINT_PORT"),
        description="Port `inpaint-api` listens on (its `--port` overrides it).",
    )
    keep_alive_seconds: int = Field(
        5,
        ge=1,
        le=300,
        description="How long `inpaint-api` keeps an idle connection open after a response, for the client's "
        "next request.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Deadline for a request's headers, from the connection's opening or the end of the previous "
        "response; past it `inpaint-api` closes the connection (slowloris protection).",
    )
    body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Deadline for a request's whole body, from the end of its headers; past it `inpaint-api` "
        "answers 408 and closes the connection. A client must send INPAINT_MAX_BODY_BYTES in this time.",
    )

    result_ttl_seconds: int = Field(
        3600,
        ge=1,
        description="How long results are kept after a job ends; then its status and result answer 404 "
        "and the reaper deletes its images.",
    )
    reaper_interval_seconds: float = Field(60.0, gt=0, description="How often expired results are deleted.")
    upload_ttl_seconds: int = Field(
        3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long an image uploaded with upload_image can be submitted; then its link is refused "
        "and the reaper deletes it.",
    )
    record_retention_days: int = Field(
        30,
        ge=1,
        description="Days a job's record is kept after it ends: then the reaper deletes the job row (with its "
        "parameters), its webhook events and their delivery attempts, its idempotency key and number, and its "
        "batch once no job of it is left. QUEUED and PROCESSING jobs are never deleted. The /metrics counters "
        "keep counting the deleted jobs and events (aggregate tallies are kept).",
    )
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=64 * 64,
        le=89_478_485,
        description="Largest input image, in pixels, checked before decoding; at most Pillow's own limit.",
    )
    max_image_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest encoded input image.")
    fetch_timeout_seconds: float = Field(15.0, gt=0, description="Overall deadline for fetching an image URL.")
    allow_loopback_urls: bool = Field(
        False, description="Let image and webhook URLs point at loopback. Tests and local use only."
    )
    max_body_bytes: int = Field(
        12 * 1024 * 1024,
        ge=1024,
        description="Largest request body; larger ones get 413 before they are read in full. The "
        "default (12 MiB) fits two incompressible 1024x1024 RGBA PNGs in base64 (2 x 4.2 MB x 4/3 = 11.2 MB) "
        "plus the JSON fields.",
    )
    max_requests: int = Field(
        32,
        ge=1,
        le=1000,
        description="Requests one API process handles at once (event streams not counted); more get 429 "
        "with Retry-After at once, never a wait. Keep it under the request thread pool (40).",
    )
    max_requests_per_key: int = Field(
        16,
        ge=1,
        le=1000,
        description="Requests one API key (or, without a key header, one client address) may have in "
        "progress at once in one API process; more get 429. One slow client cannot take every thread: with "
        "the default total of 32, no key takes more than half.",
    )
    max_event_streams: int = Field(
        2000, ge=1, description="Open event streams (GET /v2/requests/{id}/events) per API process."
    )
    max_event_streams_per_key: int = Field(
        50, ge=1, description="Open event streams one API key may hold in one API process; more get 429."
    )
    max_image_fetches: int = Field(
        16, ge=1, description="Image URLs one API process fetches at once; more submits get 429."
    )
    max_image_fetches_per_key: int = Field(
        4, ge=1, description="Image URLs one API key may have being fetched at once; more submits get 429."
    )
    database_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Longest wait of the API for a database connection (connect, or checkout from the pool) "
        "and, on PostgreSQL, for one statement; past it the API answers 503 with Retry-After. A frozen "
        "PostgreSQL (no answer at all) is seen by a probe within about this long plus one second.",
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS; empty (the default) turns CORS off."
    )
    redis_url: str | None = Field(
        None,
        description="Redis holding the rate-limit buckets; default: the broker URL when it is "
        "redis://, else the buckets live in the database.",
    )
    rate_limit_per_minute: int = Field(
        0,
        ge=0,
        description="Default submits per minute per key (token bucket refill) for keys without their own "
        "`--rate`, e.g. 600; 0: no default limit.",
    )
    rate_limit_burst: int = Field(
        100,
        ge=1,
        description="Default bucket size for keys without their own `--burst`: submits a key may make at once.",
    )
    bootstrap_api_key: SecretStr | None = Field(
        None, description="An admin key the API creates at start-up if it does not exist yet (compose uses it)."
    )

    webhook_timeout_seconds: float = Field(15.0, gt=0, le=60, description="Deadline of one webhook delivery attempt.")
    webhook_connect_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Deadline for connecting to a webhook receiver, within the attempt's own deadline: a "
        "receiver that never accepts fails this fast.",
    )
    webhook_max_in_flight_per_key: int = Field(
        2,
        ge=1,
        description="Most webhook deliveries of one API key attempted at once, across all ops workers. The "
        "key's other due deliveries wait, holding no worker thread, and go out as these end; a progress "
        "event that finds its key at the limit is dropped.",
    )
    webhook_max_in_flight: int = Field(
        6,
        ge=0,
        description="Most webhook deliveries attempted at once by all keys together, across all ops workers "
        "(0: no limit). Keep it under the ops workers' threads (8 each), so that however many receivers hang, "
        "the dispatcher and the maintenance tasks always find one.",
    )
    webhook_retries_per_key_per_minute: int = Field(
        60,
        ge=0,
        description="Most retries and redeliveries of one API key's webhook events started a minute; the "
        "rest are put off a little. 0: no limit.",
    )
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        [5, 60, 300, 1800, 7200, 21600, 43200, 86400],
        description="Seconds to wait before each retry of a failed terminal event (comma-separated); the "
        "default makes nine attempts over about two days.",
    )
    webhook_progress_interval_seconds: float = Field(
        1.0, ge=0, description="Least time between two progress events of one job."
    )
    webhook_dispatch_interval_seconds: float = Field(
        1.0, gt=0, description="How often due webhook deliveries are looked for."
    )
    webhook_secret_overlap_seconds: int = Field(
        86400,
        ge=0,
        description="After a rotation, how long deliveries also carry the old secret's signature (default: a day).",
    )
    bootstrap_webhook_secret: SecretStr | None = Field(
        None, description="Webhook signing secret (whsec_...) of the bootstrap key; generated if unset."
    )

    sync_wait_seconds: float = Field(
        60.0, gt=0, le=600, description="How long POST /v1/{model} waits for its job before answering 504."
    )
    modelslab_wait_seconds: float = Field(
        10.0,
        ge=0,
        le=600,
        description="How long the ModelsLab routes wait before answering `processing` with fetch links.",
    )
    modelslab_unknown_fields: Literal["reject", "ignore"] = Field(
        "ignore",
        description="A body field that neither ModelsLab v6 inpaint nor the Stable Diffusion API enterprise "
        "documents, on their routes: `ignore` drops it and names it in the answer's `meta.not_applied` (as the "
        "hosted APIs take any field, so migrating clients work unchanged); `reject` answers 400. "
        "POST /v2 always rejects one.",
    )
    heartbeat_interval_seconds: float = Field(5.0, gt=0, description="How often a worker marks its running job alive.")
    heartbeat_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A PROCESSING job with no heartbeat for this long has lost its worker; the sweeper requeues it.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Runs of a job before a lost worker fails it for good (`error_code: worker_lost`).",
    )
    job_time_limit_seconds: int = Field(
        900, ge=1, description="A job running longer than this ends FAILED (`error_code: timeout`)."
    )
    sweep_interval_seconds: float = Field(5.0, gt=0, description="How often the sweeper repairs lost or stuck jobs.")
    storage_retry_seconds: float = Field(
        30.0,
        ge=0,
        description="How long a worker retries object storage before failing the job "
        "(`error_code: storage_unavailable`).",
    )
    min_free_disk_mb: int = Field(
        256,
        ge=0,
        description="Free space /readyz requires on the disks this process writes (the local image directory "
        "and the SQLite database's); under it readiness fails naming the disk. 0: not checked.",
    )

    warmup_models: Annotated[list[str], NoDecode] = Field(
        [], description="Model slugs an inference worker loads at start, before taking jobs (comma-separated)."
    )

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where an inference worker runs its models: `auto` is CUDA when available, else the CPU."
    )
    progress_interval_seconds: float = Field(
        0.25, ge=0, description="Least time between two progress writes of one job."
    )
    log_level: str = Field("INFO", description="Least level logged: DEBUG, INFO, WARNING, ERROR.")
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line (request_id, track_id on job lines); text: plain lines."
    )
    metrics_token: SecretStr | None = Field(
        None, description="A bearer token that may read GET /metrics (besides admin keys); unset: admin keys only."
    )
    metrics_window_seconds: int = Field(
        3600,
        ge=60,
        le=7 * 86400,
        description="The duration histograms of GET /metrics cover the jobs finished in this last window.",
    )
    worker_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of each worker process's Prometheus /metrics server; 0: off (compose: 9101).",
    )
    safety_checker: Literal["request", "always"] = Field(
        "request",
        description="'request': the NSFW safety checker runs on a job that asks for it (`safety_checker: yes`); "
        "'always': on every job of a diffusion model, asked or not (`erase` paints nothing new and is not "
        "checked). A job whose checker weights cannot be loaded then fails (`model_unavailable`): no image "
        "is served unchecked.",
    )
    submit_unservable: Literal["refuse", "accept"] = Field(
        "refuse",
        description="A submit to a model that no online inference worker can serve (none consumes its queue, "
        "or none has its weights or can fetch them): 'refuse' answers 503 naming the reason; 'accept' queues "
        "it to wait for a worker (deployments that scale workers from zero).",
    )
    worker_heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often an inference worker reports itself (system_details) and "
        "picks up admin commands (clear_cache, load_model's warm-up).",
    )
    overlap_jobs: bool = Field(
        True,
        description="A worker stores each job's results (PNG encoding, upload, status write) on a side "
        "thread while it runs the next job, and reads the next jobs' inputs while the current one runs "
        "(docs/architecture.md).",
    )
    max_batch_size: int = Field(
        1,
        ge=1,
        le=64,
        description="Dynamic batching: a worker runs up to this many queued jobs that differ "
        "only in prompt, seed and inputs (one image each) as one pipeline call. 1: off (docs/architecture.md).",
    )
    torch_compile: bool = Field(
        False,
        description="Run the SD 1.5 and SDXL UNets through torch.compile at the sizes of INPAINT_COMPILE_SIZES; "
        "each size compiles at its first job (minutes on a GPU), then comes from the compile cache.",
    )
    compile_sizes: Annotated[tuple[tuple[int, int], ...], NoDecode] = Field(
        ((512, 512), (768, 768), (1024, 1024), (1024, 768), (768, 1024)),
        description="torch.compile's shape buckets, WIDTHxHEIGHT (comma-separated), each side a multiple of 8 "
        "up to 4096; a job of any other size runs eager and compiles nothing.",
    )
    compile_cache_dir: Path | None = Field(
        None,
        description="Where compiled graphs are kept across worker restarts; default: "
        "INPAINT_DATA_DIR/compile-cache (compose: the `models` volume).",
    )
    model_memory_budget_gb: float | None = Field(
        None,
        gt=0,
        description="Memory a worker may fill with resident models; the least recently used are "
        "evicted past it. Default: 75% of the device's memory.",
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Where an inference worker keeps the single-file checkpoints it downloads from http(s) URLs "
        "(docs/models.md); default: INPAINT_DATA_DIR/model-cache.",
    )
    max_checkpoint_bytes: int = Field(
        16 * 1024**3,
        ge=1024,
        description="Largest checkpoint a worker downloads from a URL; a larger one fails the job "
        "(`model_unavailable`) naming both sizes. The default (16 GiB) fits an fp32 SDXL checkpoint.",
    )
    checkpoint_fetch_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="Overall deadline for downloading one checkpoint URL, redirects included.",
    )
    allow_pickle_checkpoints: bool = Field(
        False,
        description="Accept pickled single-file checkpoints (.ckpt, .pt, .pth, .bin), which can run code when "
        "loaded; off: only .safetensors, at registration and at load.",
    )

    @field_validator("webhook_retry_schedule", "warmup_models", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip().strip("'\"") for v in value.strip("[] ").split(",") if v.strip()]
        return value

    @field_validator("compile_sizes", mode="before")
    @classmethod
    def _split_sizes(cls, value: object) -> object:
        if isinstance(value, str):
            return [parse_size(entry.strip()) for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("compile_sizes")
    @classmethod
    def _check_sizes(cls, value: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        for width, height in value:
            if not all(side % 8 == 0 and 8 <= side <= MAX_COMPILE_SIDE for side in (width, height)):
                raise ValueError(
                    f"INPAINT_COMPILE_SIZES: {width}x{height} is out of range: each side must be "
                    f"a multiple of 8 from 8 to {MAX_COMPILE_SIDE}"
                )
        return value

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

    @model_validator(mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, data: Any) -> Any:
        """An empty secret (`INPAINT_BOOTSTRAP_API_KEY=` in an env file) is no secret: unset, so
        that no empty key, token or password is ever accepted or created."""
        if isinstance(data, dict):
            secrets_ = {name for name, field in cls.model_fields.items() if is_secret(field)}
            data = {k: v for k, v in data.items() if not (k in secrets_ and v == "")}
        return data

    @model_validator(mode="after")
    def _check_database_password(self) -> Settings:
        if self.database_password is None:
            return self
        if self.database_url is None or self.database_url.startswith("sqlite"):
            raise ValueError(
                "INPAINT_DATABASE_PASSWORD is set, but the database is SQLite "
                f"({'INPAINT_DATABASE_URL unset' if self.database_url is None else 'INPAINT_DATABASE_URL'}), "
                "which takes no password"
            )
        parts = urlsplit(self.database_url)
        if parts.password is not None:
            raise ValueError(
                "INPAINT_DATABASE_PASSWORD is set, and INPAINT_DATABASE_URL carries a password too; "
                "keep it in one place"
            )
        if not parts.username:
            raise ValueError("INPAINT_DATABASE_PASSWORD is set, but INPAINT_DATABASE_URL names no user (user@host)")
        return self

    @property
    def result_ttl(self) -> timedelta:
        return timedelta(seconds=self.result_ttl_seconds)

    @cached_property
    def resolved_database_url(self) -> str:
        """The URL to connect with, INPAINT_DATABASE_PASSWORD included: never log it (log
        SQLAlchemy's `make_url(url)`, whose repr hides the password).

        The password goes in percent-encoded after the user, as SQLAlchemy's URL.set(password=...)
        renders it; it is built here with urllib because this module must not import SQLAlchemy
        (the engine's import contract forbids it, and the engine reads these settings)."""
        if self.database_url is None:
            return f"sqlite:///{(self.data_dir / 'inpaint.db').resolve()}"
        if self.database_password is None:
            return self.database_url
        parts = urlsplit(self.database_url)
        user, _, host = parts.netloc.rpartition("@")
        password = quote(self.database_password.get_secret_value(), safe="")
        return parts._replace(netloc=f"{user}:{password}@{host}").geturl()

    @cached_property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @cached_property
    def resolved_redis_url(self) -> str | None:
        """Where rate-limit buckets live: Redis when there is one, else None (the database)."""
        if self.redis_url:
            return self.redis_url
        broker = self.resolved_broker_url
        return broker if broker.startswith(("redis://", "rediss://")) else None

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @cached_property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "blobs").resolve()

    @cached_property
    def resolved_compile_cache_dir(self) -> Path:
        return (self.compile_cache_dir or self.data_dir / "compile-cache").resolve()

    @cached_property
    def resolved_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "model-cache").resolve()

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
