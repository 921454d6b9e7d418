"""Saving a result's images: outputs are signed URLs, or base64 strings (`output_format: base64`).

Files are named `{stem}-{i}.{ext}`, i from 0, the extension from the image's own bytes
(png, jpg or webp); the stem defaults to the request id.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from inpaint_client.errors import InpaintError


def pending_outputs(result: dict[str, Any]) -> list[str | bytes]:
    """Each output as a URL to fetch (str) or the decoded image (bytes)."""
    if result.get("status") != "COMPLETED":
        raise InpaintError(f"request {result.get('request_id')} has no images: it is {result.get('status')}")
    outputs = result.get("output") or []
    if result.get("output_format") == "base64":
        return [base64.b64decode(item) for item in outputs]
    return [item if item.startswith(("http://", "https://")) else base64.b64decode(item) for item in outputs]


def extension_of(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def save_output(directory: str | Path, stem: str, index: int, data: bytes) -> Path:
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{index}.{extension_of(data)}"
    path.write_bytes(data)
    return path
