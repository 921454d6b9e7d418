"""Signed, expiring links to images on the local backend (the embedded default)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import ContextDep
from storage.blobs import LocalBlobStore
from storage.errors import NotFound
from storage.jobs import utcnow

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}", summary="Download an image through a signed link", include_in_schema=False)
def get_file(
    key: str,
    context: ContextDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    blobs = context.blobs
    if not isinstance(blobs, LocalBlobStore) or not blobs.verify(key, expires, signature, now=utcnow()):
        raise NotFound("this link is invalid or has expired")
    path = blobs.path(key)
    if not path.is_file():
        raise NotFound("this link is invalid or has expired")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
