"""What the sync and async clients share: configuration, and reading the server's answers.

Nothing here does I/O; client.py and aio.py send the requests and hand the responses here.
Conventions of the API this relies on: the key goes in `x-api-key`; a FAILED job is HTTP 422
with a body that still has `status`; a result not ready yet is HTTP 202 with the status body.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import httpx

from inpaint_client.errors import APIError, InferenceFailed, InferenceTimeout, InpaintError

VERSION = "0.1.0"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
TERMINAL = ("COMPLETED", "FAILED")
MAX_BATCH_ITEMS = 100


def resolve_base_url(base_url: str | None) -> str:
    """The server root. `INPAINT_API_URL` when not given; a trailing /v1 or /v2 is dropped, so a
    Segmind-style base URL (`https://host/v1`) works too."""
    url = (base_url or os.environ.get("INPAINT_API_URL") or DEFAULT_BASE_URL).rstrip("/")
    for suffix in ("/v1", "/v2"):
        url = url.removesuffix(suffix)
    return url


def resolve_api_key(api_key: str | None) -> str:
    """The key given, else INPAINT_API_KEY, else SEGMIND_API_KEY (code written for Segmind works unchanged)."""
    key = api_key or os.environ.get("INPAINT_API_KEY") or os.environ.get("SEGMIND_API_KEY")
    if not key:
        raise InpaintError("no API key: pass api_key=... or set INPAINT_API_KEY")
    return key


def auth_headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "user-agent": f"inpaint-queue-client/{VERSION}"}


def submit_headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def api_error(response: httpx.Response) -> APIError:
    body = body_of(response)
    if isinstance(body, dict) and body.get("error"):
        message = str(body["error"])
    else:
        message = response.reason_phrase or "request failed"
    return APIError(response.status_code, message, body)


def expect_json(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; APIError otherwise."""
    if not response.is_success:
        raise api_error(response)
    return response.json()


def failure_of(request_id: str, body: dict[str, Any]) -> InferenceFailed:
    return InferenceFailed(
        request_id, detail=str(body.get("error") or "the job failed"), error_code=body.get("error_code"), body=body
    )


def read_status(response: httpx.Response) -> dict[str, Any]:
    """GET .../status: 200, or 422 for a FAILED job whose body is still a status body."""
    body = body_of(response)
    if response.status_code in (200, 422) and isinstance(body, dict) and "status" in body:
        return body
    raise api_error(response)


def read_result(response: httpx.Response, request_id: str) -> dict[str, Any]:
    """GET /v2/requests/{id}: the result body (COMPLETED) or the status body (202: not done yet).
    FAILED raises InferenceFailed."""
    body = body_of(response)
    if response.status_code == 422 and isinstance(body, dict) and body.get("status") == "FAILED":
        raise failure_of(request_id, body)
    if response.status_code in (200, 202) and isinstance(body, dict):
        return body
    raise api_error(response)


@dataclass(frozen=True)
class SyncResult:
    """The answer of POST /v1/{model}: the first image's bytes and the job's facts."""

    image: bytes
    request_id: str
    seed: int | None
    seeds: list[int]
    inference_time: float | None
    content_type: str


def read_sync_answer(response: httpx.Response) -> SyncResult:
    """POST /v1/{model}: 200 is the image; 422 a failed job; 504 not done in time (it keeps running)."""
    request_id = response.headers.get("x-request-id", "")
    if response.status_code == 504 and request_id:
        raise InferenceTimeout(request_id)
    if response.status_code == 422 and request_id:
        raise failure_of(request_id, body_of(response) or {})
    if not response.is_success:
        raise api_error(response)
    seeds = [int(s) for s in response.headers.get("x-seeds", "").split(",") if s]
    spent = response.headers.get("x-inference-time")
    image, content_type = response.content, response.headers.get("content-type", "")
    if content_type.startswith("application/json"):  # sent with base64: true
        image, content_type = base64.b64decode(response.json()["image"]), "image/png"
    return SyncResult(
        image=image,
        request_id=request_id,
        seed=seeds[0] if seeds else None,
        seeds=seeds,
        inference_time=float(spent) if spent else None,
        content_type=content_type,
    )


def listing_query(status: str | None, page_size: int, cursor: str | None) -> dict[str, Any]:
    """Query of GET /v2/requests."""
    return {"limit": page_size, **({"status": status} if status else {}), **({"cursor": cursor} if cursor else {})}


def check_batch(items: list[dict[str, Any]]) -> None:
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} items, got {len(items)}; split it")
