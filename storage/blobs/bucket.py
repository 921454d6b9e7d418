"""The results bucket and its lifecycle rule, set up idempotently (`inpaint-admin storage init`).

Only portable S3 calls: HeadBucket, CreateBucket, PutBucketLifecycleConfiguration. The rule is a
backstop, not the retention: S3 lifecycles count in whole days, so objects expire after
EXPIRATION_DAYS, while the reaper deletes each job's images INPAINT_RESULT_TTL_SECONDS after it ends.

PutBucketLifecycleConfiguration replaces a bucket's whole configuration, so running this N times
leaves exactly one rule. A server that does not implement lifecycles (NotImplemented,
MethodNotAllowed, HTTP 501) is not a failure: the report says so and the reaper still deletes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as S3ConnectionError

from storage.blobs.store import S3BlobStore, make_blob_store
from storage.errors import InvalidInput, Unavailable
from storage.settings import Settings

EXPIRATION_DAYS = 1
RULE_ID = "inpaint-expire-backstop"
UNSUPPORTED = frozenset({"NotImplemented", "MethodNotAllowed", "501", "405"})
"""Error codes (or bare HTTP statuses) of a server that has no lifecycle API."""
WAIT_SECONDS = 60.0
"""How long to wait for a server that is starting (connection refused, HTTP 5xx other than 501)."""
T = TypeVar("T")


@dataclass(frozen=True)
class BucketReport:
    """What `init_bucket` found and did. lifecycle_unsupported: the server's error code, or None."""

    bucket: str
    created: bool
    lifecycle_unsupported: str | None = None

    def lines(self) -> list[str]:
        state = "created" if self.created else "already exists"
        lines = [f"bucket {self.bucket!r}: {state}"]
        if self.lifecycle_unsupported is None:
            lines.append(f"lifecycle of {self.bucket!r}: one rule, objects expire after {EXPIRATION_DAYS} day")
        return lines

    def warning(self) -> str | None:
        if self.lifecycle_unsupported is None:
            return None
        return (
            f"warning: the S3 server does not implement bucket lifecycles ({self.lifecycle_unsupported}); "
            f"no {EXPIRATION_DAYS}-day expiration rule is set on {self.bucket!r}. The reaper (beat and the ops "
            "worker) still deletes each job's images INPAINT_RESULT_TTL_SECONDS after it ends."
        )


def error_code(exc: ClientError) -> str:
    """The S3 error code, or the bare HTTP status when the body had none (a HEAD answers no body)."""
    code = str(exc.response.get("Error", {}).get("Code") or "")
    return code or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def status_of(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_transient(exc: Exception) -> bool:
    """A server still starting: no connection yet, or a 5xx that is not 'not implemented'."""
    if isinstance(exc, S3ConnectionError | HTTPClientError):
        return True
    return isinstance(exc, ClientError) and status_of(exc) >= 500 and error_code(exc) not in UNSUPPORTED


def wait_for(call: Callable[[], T], *, budget: float, what: str) -> T:
    """Run `call`, retrying transient failures with backoff for up to `budget` seconds; any other
    error is raised at once."""
    deadline = time.monotonic() + budget
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - is_transient sorts them; the rest are raised
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                if is_transient(exc):
                    raise Unavailable(f"{what}: the S3 server did not answer for {budget:g} s") from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def bucket_exists(client: Any, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if status_of(exc) == 404 or error_code(exc) in ("NoSuchBucket", "NotFound", "404"):
            return False
        raise
    return True


def create_bucket(client: Any, bucket: str) -> bool:
    """Create `bucket` unless it exists; True if this call created it. Another creator winning the
    race (BucketAlreadyOwnedByYou, or BucketAlreadyExists on a bucket we can reach) is no error."""
    if bucket_exists(client, bucket):
        return False
    options: dict[str, Any] = {}
    region = client.meta.region_name
    if region and region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(Bucket=bucket, **options)
    except ClientError as exc:
        code = error_code(exc)
        if code == "BucketAlreadyOwnedByYou" or (code == "BucketAlreadyExists" and bucket_exists(client, bucket)):
            return False
        raise
    return True


def expiration_rules(days: int = EXPIRATION_DAYS) -> dict[str, Any]:
    """The whole lifecycle configuration: one rule, every object of the bucket, `days` after writing."""
    return {"Rules": [{"ID": RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": days}}]}


def put_expiration_rule(client: Any, bucket: str) -> str | None:
    """Replace the bucket's lifecycle with `expiration_rules()`. None when done; the server's error
    code when it does not implement lifecycles."""
    try:
        client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=expiration_rules())
    except ClientError as exc:
        code = error_code(exc)
        if code in UNSUPPORTED or status_of(exc) in (405, 501):
            return code
        raise
    return None


def init_bucket(client: Any, bucket: str, *, wait_seconds: float = WAIT_SECONDS) -> BucketReport:
    """Create the bucket if it is missing and put its one lifecycle rule; safe to run any number of
    times. Waits up to `wait_seconds` for a server that is still starting."""
    try:
        created = wait_for(lambda: create_bucket(client, bucket), budget=wait_seconds, what=f"creating {bucket!r}")
        unsupported = wait_for(
            lambda: put_expiration_rule(client, bucket), budget=wait_seconds, what=f"the lifecycle of {bucket!r}"
        )
    except ClientError as exc:
        operation = exc.operation_name or "a bucket call"
        raise InvalidInput(
            "INPAINT_S3_BUCKET",
            f"the S3 server refused {operation} on {bucket!r} ({error_code(exc)}); check the name and that "
            "INPAINT_S3_ACCESS_KEY_ID may create and configure it",
            value=bucket,
        ) from None
    return BucketReport(bucket=bucket, created=created, lifecycle_unsupported=unsupported)


def init_storage(settings: Settings, *, wait_seconds: float = WAIT_SECONDS) -> BucketReport | None:
    """`inpaint-admin storage init`: the S3 backend's bucket and rule, with the client the API and the
    workers use (make_blob_store). None for the local backend, which has nothing to set up."""
    if settings.storage_backend != "s3":
        return None
    store = make_blob_store(settings)
    if not isinstance(store, S3BlobStore):
        raise TypeError(f"backend s3 made a {type(store).__name__}")
    return init_bucket(store.client, store.bucket, wait_seconds=wait_seconds)
