"""Decoding untrusted images, safely, and the project's mask convention.

- Only PNG, JPEG and WebP decoders ever run.
- The pixel count is checked from the header, before any pixel is decoded
  (INPAINT_MAX_IMAGE_PIXELS, at most Pillow's own limit, which stays as a backstop).
- Only the first frame of an animation is used.
- Every input is re-encoded as PNG from its pixels before it is stored, so whatever
  else the file carried (a polyglot's second payload, text, ICC, EXIF) is dropped.
- mask: mode L, 255 = repaint, 0 = keep. Grey values are thresholded at 128.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re

from PIL import Image, ImageOps

from storage.errors import InvalidInput

log = logging.getLogger(__name__)

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
        raise InvalidInput(field, "is not an http(s) URL, a data URI or valid base64", value=_shorten(value)) from None


def open_image(field: str, data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode `data` as PNG, JPEG or WebP after checking its size from the header alone.

    Returns the first frame, turned upright by its EXIF orientation, in an 8-bit
    mode (16-bit and float greys are scaled down). Every failure is InvalidInput
    naming the field.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        check_pixels(field, image.size, max_pixels)
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
        return to_8bit(ImageOps.exif_transpose(image))
    except InvalidInput:
        raise
    except Image.DecompressionBombError:
        raise InvalidInput(field, f"has more pixels than the limit of {max_pixels}", limit=max_pixels) from None
    except Exception as exc:  # noqa: BLE001 - a decoder fed hostile bytes may raise anything; all are bad input
        log.info("%s could not be decoded: %s", field, type(exc).__name__)
        raise InvalidInput(
            field, f"could not be decoded as {', '.join(ALLOWED_FORMATS)}", limit=list(ALLOWED_FORMATS)
        ) from None


def check_pixels(field: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InvalidInput(
            field,
            f"has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}",
            limit=max_pixels,
            value=f"{width}x{height}",
        )
    if width < 1 or height < 1:
        raise InvalidInput(field, f"has no pixels ({width}x{height})", value=f"{width}x{height}")


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit integer and float greys (modes I;16*, I, F) as mode L, scaled rather than clipped."""
    if image.mode.startswith("I;16") or image.mode == "I":
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode == "F":
        return image.convert("L")
    return image


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
    """PNG of the pixels alone: no text, ICC profile, EXIF or transparency chunk is carried over."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1, icc_profile=None, transparency=None, exif=None, pnginfo=None)
    return buf.getvalue()


def decode_png(data: bytes) -> Image.Image:
    """Open an image this service stored itself (already checked and re-encoded)."""
    image = Image.open(io.BytesIO(data), formats=("PNG",))
    image.load()
    return image


def _shorten(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
