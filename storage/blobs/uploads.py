"""Uploaded input images (the Stable Diffusion API enterprise `upload_image`): stored under a
per-key prefix, reachable through a signed, expiring link that only the uploading key may submit.

    object:  uploads/{owner}/{token}           owner: an HMAC tag of the key's id (opaque, stable)
    link:    {base}/uploads/{owner}/{token}?expires=...&signature=...
             signature: HMAC of "upload:{owner}:{token}" and the expiry, with the service's secret key

A submitted image URL of that shape is never fetched over the network: its signature is checked
and the object is read from storage (`read_upload`). Whatever host it names, only this service
can have signed it. The reaper deletes uploads once they are older than their link's lifetime.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from storage.blobs.links import signature, signed_query
from storage.blobs.store import BlobStore, with_retries
from storage.errors import InvalidInput, NotFound

UPLOAD_PREFIX = "uploads/"
_PATH = re.compile(r"(?:^|/)uploads/(?P<owner>[0-9a-f]{16})/(?P<token>[A-Za-z0-9_-]{16,64})$")
NOT_YOURS = "is not an upload link of this API key (or its signature is not valid); upload the image with this key"


@dataclass(frozen=True)
class UploadLink:
    owner: str
    token: str
    expires: int
    signature: str

    @property
    def key(self) -> str:
        return upload_key(self.owner, self.token)


def owner_tag(api_key_id: int, *, signing_key: bytes) -> str:
    """The per-key folder name: stable for a key, and says nothing about which key it is."""
    return hmac.new(signing_key, f"upload-owner:{api_key_id}".encode(), hashlib.sha256).hexdigest()[:16]


def upload_key(owner: str, token: str) -> str:
    return f"{UPLOAD_PREFIX}{owner}/{token}"


def new_token() -> str:
    return secrets.token_urlsafe(18)


def upload_subject(owner: str, token: str) -> str:
    return f"upload:{owner}:{token}"


def upload_link(base_url: str, owner: str, token: str, *, expires_at: datetime, signing_key: bytes) -> str:
    query = signed_query(upload_subject(owner, token), expires_at=expires_at, key=signing_key)
    return f"{base_url.rstrip('/')}/uploads/{owner}/{token}?{query}"


def parse_upload_link(url: str) -> UploadLink | None:
    """The link's parts if `url` has the shape of an upload link (path and signed query), else None."""
    parts = urlsplit(url)
    match = _PATH.search(parts.path)
    if match is None:
        return None
    query = parse_qs(parts.query)
    expires, given = query.get("expires", [""])[0], query.get("signature", [""])[0]
    if not (expires and given):
        return None
    if not expires.isdigit() or len(expires) > 12:
        return UploadLink(match["owner"], match["token"], 0, "")  # ours in shape, never valid
    return UploadLink(match["owner"], match["token"], int(expires), given)


def is_signed(link: UploadLink, *, signing_key: bytes) -> bool:
    expected = signature(upload_subject(link.owner, link.token), link.expires, signing_key)
    return hmac.compare_digest(expected, link.signature)


@dataclass(frozen=True)
class UploadReader:
    """Reads the upload links of one key (`owner`, its tag) straight from storage."""

    owner: str
    blobs: BlobStore
    signing_key: bytes

    def read(self, field: str, url: str, link: UploadLink, *, now: datetime) -> bytes:
        return read_upload(field, url, link, owner=self.owner, blobs=self.blobs, signing_key=self.signing_key, now=now)


def read_upload(
    field: str, url: str, link: UploadLink, *, owner: str, blobs: BlobStore, signing_key: bytes, now: datetime
) -> bytes:
    """The uploaded bytes, for the key whose tag is `owner`. A link of another key and a forged one
    get the same 400, so that neither learns whether the upload exists; an expired one says so."""
    if not hmac.compare_digest(link.owner, owner) or not is_signed(link, signing_key=signing_key):
        raise InvalidInput(field, NOT_YOURS, value=url)
    if now.timestamp() >= link.expires:
        expired = datetime.fromtimestamp(link.expires, UTC).isoformat()
        raise InvalidInput(field, f"is an upload link that expired at {expired}; upload the image again", value=url)
    try:
        return with_retries(lambda: blobs.get(link.key), budget=2.0, what="reading an upload")
    except NotFound:
        raise InvalidInput(field, "is an upload that no longer exists; upload the image again", value=url) from None
