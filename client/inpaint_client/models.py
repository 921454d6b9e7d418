"""Typed request parameters, and turning local images into what the API accepts.

Images (`image`, `mask`) may be given as:
  - an http(s) URL or a `data:` URI (sent as is; the server fetches a URL itself),
  - a base64 string (sent as is),
  - bytes (an encoded PNG, JPEG or WebP file),
  - a local file path (str or os.PathLike),
  - a PIL image, if Pillow is installed (sent as PNG).
Everything but URLs is sent inline as base64. Mask convention: white (255) repaints, black (0) keeps.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, TypedDict

ImageInput = str | bytes | bytearray | os.PathLike[str] | Any
"""URL, data URI, base64, bytes, a path, or a PIL image."""

IMAGE_FIELDS = ("image", "mask")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_PATH_CHARS = 4096


class InpaintParams(TypedDict, total=False):
    """The body of POST /v2/{model}. Ranges are per model: GET /v2/models (Client.models()) lists them."""

    prompt: Required[str]
    image: Required[ImageInput]
    mask: Required[ImageInput]
    negative_prompt: str
    samples: int
    scheduler: str
    num_inference_steps: int
    guidance_scale: float
    strength: float
    seed: int
    img_width: int
    img_height: int
    width: int
    height: int
    base64: bool
    webhook: str
    track_id: str | int
    webhook_events: list[Literal["progress", "completed", "failed"]]


class BatchItem(InpaintParams):
    """One item of POST /v2/batch: a submit body plus its model slug."""

    model: NotRequired[str]


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def looks_like_path(value: str) -> bool:
    """Short strings ending in an image suffix are paths (a base64 image never is that short)."""
    return len(value) < MAX_PATH_CHARS and value.lower().endswith(IMAGE_SUFFIXES)


def encode_image(value: ImageInput) -> str:
    """The wire form of one image: a URL or data URI as given, anything else as base64."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, os.PathLike):
        return base64.b64encode(Path(value).read_bytes()).decode()
    if isinstance(value, str):
        if is_url(value) or value.startswith("data:"):
            return value
        if looks_like_path(value) or (len(value) < MAX_PATH_CHARS and os.path.isfile(value)):
            return base64.b64encode(Path(value).read_bytes()).decode()  # FileNotFoundError names the path
        return value
    if type(value).__module__.startswith("PIL."):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()
    raise TypeError(f"an image must be a URL, base64, bytes, a path or a PIL image, not {type(value).__name__}")


def prepare_body(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of `params` ready to send: images encoded, None values left out (server defaults)."""
    body = {name: value for name, value in params.items() if value is not None}
    for name in IMAGE_FIELDS:
        if name in body:
            body[name] = encode_image(body[name])
    return body
