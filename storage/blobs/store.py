"""Image storage: any S3-compatible endpoint, or a local directory for the embedded default.

Keys are derived from the job id alone (`job_key`), so a retried job writes the
same objects again instead of leaving strays. Links expire with the job:
presigned GET URLs on S3, HMAC-signed `/files/...` links on the local backend,
which the API verifies and serves.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from storage.blobs.links import is_valid, signed_query
from storage.errors import NotFound, Unavailable
from storage.settings import Settings

MAX_PRESIGN_SECONDS = 7 * 24 * 3600
S3_CONNECTIONS = 64
"""Pooled connections per S3 client: the API's request threads (40) each put two inputs at once."""
T = TypeVar("T")
log = logging.getLogger(__name__)
_side_by_side = ThreadPoolExecutor(max_workers=S3_CONNECTIONS, thread_name_prefix="storage")


def input_key(job_id: str, role: str) -> str:
    """Where a job's input is stored: its bytes as sent (PNG, JPEG or WebP), so no extension. Each job
    row keeps its own keys (older jobs' end in .png)."""
    return f"jobs/{job_id}/input/{role}"


def output_key(job_id: str, attempt: int, index: int) -> str:
    """Deterministic per attempt: a run that lost its claim can never overwrite the winner's images."""
    return f"jobs/{job_id}/output/{attempt}-{index}.png"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


class BlobStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "image/png") -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def delete_older_than(self, prefix: str, before: datetime) -> int: ...
    def url(self, key: str, *, expires_at: datetime, now: datetime, base_url: str) -> str: ...
    def check(self) -> None: ...


def in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run several storage calls side by side, so that their round trips overlap; their results in
    order. Every call has ended when this returns; the first one's error, if any, is raised."""
    if len(calls) < 2:
        return [call() for call in calls]
    futures = [_side_by_side.submit(call) for call in calls]
    wait(futures)
    return [future.result() for future in futures]


def with_retries(action: Callable[[], T], *, budget: float, what: str) -> T:
    """Run a storage call, retrying with exponential backoff for up to `budget` seconds.

    A missing object is an answer, not a fault, and is never retried. When the
    budget runs out, Unavailable says what could not be done."""
    deadline = time.monotonic() + budget
    delay = 0.25
    while True:
        try:
            return action()
        except NotFound:
            raise
        except Exception as exc:  # noqa: BLE001 - any other storage error may be passing
            if time.monotonic() + delay > deadline:
                raise Unavailable(f"{what}: object storage was unavailable for {budget:g} s") from exc
            log.warning("%s failed (%s); retrying in %.2f s", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def disk_shortfall(path: Path, min_free_bytes: int) -> str | None:
    """Why the disk holding `path` has too little room ("12 MB free, under the 256 MB minimum"), or None."""
    if min_free_bytes <= 0:
        return None
    free = shutil.disk_usage(path).free
    if free >= min_free_bytes:
        return None
    return f"{free // 2**20} MB free, under the {min_free_bytes // 2**20} MB minimum (INPAINT_MIN_FREE_DISK_MB)"


class LocalBlobStore:
    """Files under `root`; links are `/files/{key}?expires=&signature=`, served by the API."""

    def __init__(self, root: Path, signing_key: bytes, *, min_free_bytes: int = 0) -> None:
        self.root = root
        self.signing_key = signing_key
        self.min_free_bytes = min_free_bytes
        """check() fails when the disk under `root` has less free (INPAINT_MIN_FREE_DISK_MB)."""
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise NotFound("no such file")
        return path

    def put(self, key: str, data: bytes, content_type: str = "image/png") -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers never see half a file

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound("no such file") from None

    def delete_prefix(self, prefix: str) -> int:
        path = self.path(prefix)
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path, ignore_errors=True)
        return count

    def delete_older_than(self, prefix: str, before: datetime) -> int:
        """Delete the files under `prefix` last written before `before`; returns how many."""
        path = self.path(prefix)
        if not path.exists():
            return 0
        deleted = 0
        for file in [p for p in path.rglob("*") if p.is_file()]:
            try:
                if file.stat().st_mtime < before.timestamp():
                    file.unlink()
                    deleted += 1
            except FileNotFoundError:
                continue  # deleted by another reaper meanwhile
        return deleted

    def url(self, key: str, *, expires_at: datetime, now: datetime, base_url: str) -> str:
        query = signed_query(key, expires_at=expires_at, key=self.signing_key)
        return f"{base_url.rstrip('/')}/files/{quote(key)}?{query}"

    def verify(self, key: str, expires: int, signature: str, *, now: datetime) -> bool:
        return is_valid(key, expires, signature, key=self.signing_key, now=now)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise Unavailable("the image directory is not writable")
        short = disk_shortfall(self.root, self.min_free_bytes)
        if short:
            raise Unavailable(f"the image directory's disk is nearly full: {short}")


class S3BlobStore:
    """Objects in one bucket of any S3-compatible service."""

    def __init__(self, client: Any, bucket: str, presign_client: Any | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.presign_client = presign_client or client

    def put(self, key: str, data: bytes, content_type: str = "image/png") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return data
        except self.client.exceptions.NoSuchKey:
            raise NotFound("no such object") from None

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                deleted += len(objects)
        return deleted

    def delete_older_than(self, prefix: str, before: datetime) -> int:
        """Delete the objects under `prefix` last written before `before`; returns how many."""
        deleted = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", []) if o["LastModified"] < before]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                deleted += len(objects)
        return deleted

    def url(self, key: str, *, expires_at: datetime, now: datetime, base_url: str) -> str:
        seconds = int((expires_at - now).total_seconds())
        url: str = self.presign_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=max(1, min(seconds, MAX_PRESIGN_SECONDS)),
        )
        return url

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            raise Unavailable(f"object storage is not reachable ({type(exc).__name__})") from None


def make_blob_store(settings: Settings) -> BlobStore:
    if settings.storage_backend == "local":
        return LocalBlobStore(
            settings.resolved_storage_dir, settings.signing_key, min_free_bytes=settings.min_free_disk_mb * 2**20
        )
    # boto3 takes a few hundred milliseconds to import: the embedded default never loads it.
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=S3_CONNECTIONS,
        s3={"addressing_style": "path"},
    )
    credentials = {
        "aws_access_key_id": settings.s3_access_key_id,
        "aws_secret_access_key": (
            settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        ),
        "region_name": settings.s3_region,
        "config": config,
    }
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, **credentials)
    presign = None
    if settings.s3_public_endpoint_url:
        presign = boto3.client("s3", endpoint_url=settings.s3_public_endpoint_url, **credentials)
    return S3BlobStore(client, settings.s3_bucket, presign)
