"""Inpaint Queue client: a sync and an async SDK on httpx, webhook verification, and the `inpaint` CLI.

    import inpaint_client
    result = inpaint_client.run("erase", prompt="-", image="photo.png", mask="mask.png")

Needs only httpx: it imports nothing from the server.
"""

from __future__ import annotations

from typing import Any, Unpack

from inpaint_client._http import VERSION, SyncResult
from inpaint_client._sse import Event
from inpaint_client.aio import AsyncBatch, AsyncClient, AsyncJob
from inpaint_client.client import Client
from inpaint_client.errors import (
    APIError,
    EventStreamLost,
    InferenceFailed,
    InferenceTimeout,
    InpaintError,
    WebhookVerificationError,
)
from inpaint_client.handles import Batch, Job
from inpaint_client.models import BatchItem, InpaintParams, encode_image
from inpaint_client.webhooks import verify_webhook

__version__ = VERSION

__all__ = [
    "APIError",
    "AsyncBatch",
    "AsyncClient",
    "AsyncJob",
    "Batch",
    "BatchItem",
    "Client",
    "Event",
    "EventStreamLost",
    "InferenceFailed",
    "InferenceTimeout",
    "InpaintError",
    "InpaintParams",
    "Job",
    "SyncResult",
    "WebhookVerificationError",
    "encode_image",
    "run",
    "verify_webhook",
]


def run(
    model: str, *, timeout: float = 600.0, interval: float = 1.0, **params: Unpack[InpaintParams]
) -> dict[str, Any]:
    """Submit with a client from the environment (INPAINT_API_URL, INPAINT_API_KEY) and wait:
    the result body. As `segmind.run`."""
    with Client() as client:
        return client.run(model, timeout=timeout, interval=interval, **params)
