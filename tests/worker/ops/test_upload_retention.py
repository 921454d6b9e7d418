"""The reaper deletes uploads (upload_image) older than their link's lifetime, and checked images
(nsfw_image_check) older than CHECK_TTL, and only those."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from storage.blobs.checks import check_image_key, check_verdict_key
from storage.blobs.store import LocalBlobStore, input_key
from storage.blobs.uploads import upload_key
from storage.database.jobs import utcnow
from worker.ops.retention import reap_checks, reap_uploads


def test_uploads_older_than_the_ttl_are_deleted(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path, b"k")
    now = utcnow()
    old, fresh, job_input = upload_key("0" * 16, "old" * 6), upload_key("1" * 16, "fresh" * 4), input_key("j", "image")
    for key in (old, fresh, job_input):
        blobs.put(key, b"x")
    two_hours_ago = (now - timedelta(hours=2)).timestamp()
    for key in (old, job_input):
        os.utime(blobs.path(key), (two_hours_ago, two_hours_ago))

    assert reap_uploads(blobs, now=now, ttl=timedelta(hours=1)) == 1
    assert not blobs.path(old).exists()
    assert blobs.get(fresh) == b"x"
    assert blobs.get(job_input) == b"x", "only uploads are the upload reaper's"
    assert reap_uploads(blobs, now=now, ttl=timedelta(hours=1)) == 0


def test_checks_older_than_an_hour_are_deleted_with_their_verdicts(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path, b"k")
    now = utcnow()
    old = (check_image_key("old"), check_verdict_key("old"))
    fresh, upload = check_image_key("fresh"), upload_key("0" * 16, "up" * 8)
    for key in (*old, fresh, upload):
        blobs.put(key, b"x")
    two_hours_ago = (now - timedelta(hours=2)).timestamp()
    for key in (*old, upload):
        os.utime(blobs.path(key), (two_hours_ago, two_hours_ago))

    assert reap_checks(blobs, now=now) == 2
    assert not any(blobs.path(key).exists() for key in old)
    assert blobs.get(fresh) == b"x" and blobs.get(upload) == b"x", "only checks are the check reaper's"
