"""Image checks (the Stable Diffusion API enterprise `nsfw_image_check`): the API stores the image, an
inference worker runs the safety checker on it and writes its verdict beside it, and the API answers it.

    checks/{check_id}/image          the image as sent
    checks/{check_id}/verdict.json   {"nsfw": bool, "checker": name}, or {"error_code": code, "error": reason}

The reaper deletes both once they are older than CHECK_TTL: a verdict nobody waited for is not kept.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from storage.blobs.store import BlobStore
from storage.errors import NotFound

CHECK_PREFIX = "checks/"
CHECK_TTL = timedelta(hours=1)


def check_image_key(check_id: str) -> str:
    return f"{CHECK_PREFIX}{check_id}/image"


def check_verdict_key(check_id: str) -> str:
    return f"{CHECK_PREFIX}{check_id}/verdict.json"


def put_verdict(blobs: BlobStore, check_id: str, verdict: dict[str, Any]) -> None:
    blobs.put(check_verdict_key(check_id), json.dumps(verdict).encode(), "application/json")


def read_verdict(blobs: BlobStore, check_id: str) -> dict[str, Any] | None:
    """The verdict, or None while the worker has not written one."""
    try:
        data = blobs.get(check_verdict_key(check_id))
    except NotFound:
        return None
    verdict: dict[str, Any] = json.loads(data)
    return verdict
