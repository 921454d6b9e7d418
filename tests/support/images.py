"""Test pictures: a deterministic input and a mask, and their wire encodings."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw


def scene(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A gradient with a yellow box: every pixel differs from its neighbours, so a copy is recognisable."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    rgb = np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8)
    image = Image.fromarray(rgb)
    ImageDraw.Draw(image).rectangle([w // 3, h // 3, 2 * w // 3, 2 * h // 3], fill=(250, 220, 10))
    return image


def box_mask(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """White (repaint) over the middle box, black (keep) elsewhere."""
    w, h = size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle([w // 4, h // 4, 3 * w // 4, 3 * h // 4], fill=255)
    return mask


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def b64(image: Image.Image, fmt: str = "PNG") -> str:
    return base64.b64encode(png_bytes(image, fmt)).decode()


def data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + b64(image)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def job_body(size: tuple[int, int] = (64, 64), **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"prompt": "a red apple", "image": b64(scene(size)), "mask": data_uri(box_mask(size))}
    body.update(overrides)
    return body
