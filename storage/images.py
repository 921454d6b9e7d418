"""Decoding untrusted images, safely, and the project's mask convention.

- Only PNG, JPEG and WebP decoders ever run.
- The pixel count is checked from the header, before any pixel is decoded.
- Every input is re-encoded as PNG before it is stored, so whatever else the
  file carried (a polyglot's second payload, metadata) is dropped.
- mask: mode L, 255 = repaint, 0 = keep. Grey values are thresholded at 128.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from storage.errors import InvalidInput

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
MASK_THRESHOLD = 128
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[\w.-]+)*;base64,(?P<data>.*)$", re.DOTALL)


def is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def decode_inline(field: str, value: str) -> bytes:
    """Bytes of a data URI or raw base64 string. Raises InvalidInput naming the field."""
    match = _DATA_URI.match(value.strip())
    payload = match.group("data") if match else value.strip()
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            field, "is not an http(s) URL, a data URI or valid base64", value=_shorten(value)
        ) from None


def open_image(field: str, data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode `data` as PNG, JPEG or WebP after checking its size from the header alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInput(
                    field,
                    f"has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}",
                    limit=max_pixels,
                    value=f"{width}x{height}",
                )
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            return ImageOps.exif_transpose(image)
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError):
        raise InvalidInput(
            field, f"could not be decoded as {', '.join(ALLOWED_FORMATS)}", limit=list(ALLOWED_FORMATS)
        ) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Flatten onto white if it has alpha; return mode RGB."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_mask(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Mode L, thresholded to 0/255 at MASK_THRESHOLD, resized (nearest) to `size`."""
    gray = to_rgb(image).convert("L") if image.mode not in ("L", "1") else image.convert("L")
    if gray.size != size:
        gray = gray.resize(size, Image.Resampling.NEAREST)
    return gray.point(lambda v: 255 if v >= MASK_THRESHOLD else 0)


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> Image.Image:
    """Open an image this service stored itself (already checked and re-encoded)."""
    image = Image.open(io.BytesIO(data), formats=("PNG",))
    image.load()
    return image


def _shorten(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
