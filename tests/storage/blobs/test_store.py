"""Image storage: S3 (moto) and the local directory, and links that expire with the job."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from storage.blobs.store import LocalBlobStore, S3BlobStore, make_blob_store
from storage.database.jobs import utcnow
from storage.errors import NotFound
from storage.settings import load_settings
from tests.support.services import s3_client
from tests.support.stack import unique_name


@pytest.fixture
def s3_store(services: dict[str, str]) -> S3BlobStore:
    bucket = unique_name("iq-unit-")
    s3_client(services["INPAINT_TEST_S3_ENDPOINT"]).create_bucket(Bucket=bucket)
    settings = load_settings(
        storage_backend="s3",
        s3_endpoint_url=services["INPAINT_TEST_S3_ENDPOINT"],
        s3_bucket=bucket,
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    store = make_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    return store


@pytest.fixture
def local_store(tmp_path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", b"k" * 32)


@pytest.fixture(params=["s3", "local"])
def store(request, s3_store, local_store):
    return s3_store if request.param == "s3" else local_store


def test_put_get_delete_prefix(store) -> None:
    store.put("jobs/a/output/0.png", b"one")
    store.put("jobs/a/output/1.png", b"two")
    store.put("jobs/b/output/0.png", b"other")
    assert store.get("jobs/a/output/1.png") == b"two"
    assert store.delete_prefix("jobs/a/") == 2
    with pytest.raises(NotFound):
        store.get("jobs/a/output/0.png")
    assert store.get("jobs/b/output/0.png") == b"other"
    store.check()


def test_presigned_url_lives_until_the_job_expires(s3_store: S3BlobStore) -> None:
    s3_store.put("jobs/p/output/0.png", b"png")
    now = utcnow()
    url = s3_store.url("jobs/p/output/0.png", expires_at=now + timedelta(seconds=1234), now=now, base_url="")
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Expires"] == ["1234"]
    assert httpx.get(url).content == b"png"


def test_local_links_are_signed_and_expire(local_store: LocalBlobStore) -> None:
    local_store.put("jobs/l/output/0.png", b"png")
    now = utcnow()
    url = local_store.url("jobs/l/output/0.png", expires_at=now + timedelta(minutes=5), now=now, base_url="http://h")
    query = parse_qs(urlparse(url).query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    key = "jobs/l/output/0.png"
    assert local_store.verify(key, expires, signature, now=now)
    assert not local_store.verify(key, expires, signature, now=now + timedelta(minutes=6)), "expired link accepted"
    assert not local_store.verify(key, expires + 60, signature, now=now), "extended link accepted"
    assert not local_store.verify("jobs/other/output/0.png", expires, signature, now=now)


def test_local_keys_cannot_escape_the_root(local_store: LocalBlobStore) -> None:
    with pytest.raises(NotFound):
        local_store.get("../../etc/passwd")


def test_in_parallel_overlaps_the_calls_keeps_their_order_and_raises_after_all_end() -> None:
    import threading

    from storage.blobs.store import in_parallel

    both_started = threading.Barrier(2, timeout=5)  # broken (an error) unless the two calls run at once
    assert in_parallel(
        [lambda: both_started.wait() is not None and "image", lambda: both_started.wait() is not None and "mask"]
    ) == ["image", "mask"]

    finished = threading.Event()

    def missing() -> bytes:
        raise NotFound("no such object")

    def slow() -> bytes:
        finished.wait(0.2)
        finished.set()
        return b"x"

    with pytest.raises(NotFound):
        in_parallel([missing, slow])
    assert finished.is_set(), "the error was raised before the other call ended"
    assert in_parallel([lambda: 1]) == [1]


def test_delete_older_than_goes_by_the_time_written(store) -> None:
    store.put("uploads/a/1", b"one")
    store.put("uploads/b/2", b"two")
    store.put("jobs/c/input/image", b"job")
    assert store.delete_older_than("uploads/", utcnow() - timedelta(minutes=5)) == 0
    assert store.get("uploads/a/1") == b"one"
    assert store.delete_older_than("uploads/", utcnow() + timedelta(minutes=5)) == 2
    with pytest.raises(NotFound):
        store.get("uploads/b/2")
    assert store.get("jobs/c/input/image") == b"job"
