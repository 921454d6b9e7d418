"""Checking and decoding untrusted images, safely, and the project's mask convention.

- The API checks an input from its header alone (`inspect_image`: format, size, pixel
  limit) and stores the bytes as sent; the worker decodes them (`open_image`) under
  the same limits. Stored inputs are never served back to anyone.
- Only PNG, JPEG and WebP decoders ever run.
- The pixel count is checked from the header, before any pixel is decoded
  (INPAINT_MAX_IMAGE_PIXELS, at most Pillow's own limit, which stays as a backstop).
- Only the first frame of an animation is used; EXIF orientation is applied.
- Results are encoded as PNG from their pixels alone (`encode_png`).
- mask: mode L, 255 = repaint, 0 = keep. Grey values are thresholded at 128.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps

from storage.errors import InvalidInput

log = logging.getLogger(__name__)

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
MASK_THRESHOLD = 128
_TURNED = (5, 6, 7, 8)
"""EXIF orientations that swap width and height (a quarter turn, with or without a mirror)."""
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


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says: its format and the size it decodes to (upright, first frame)."""

    format: str
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def inspect_image(field: str, data: bytes, *, max_pixels: int) -> ImageInfo:
    """Check `data` from its header alone, without decoding a pixel: a PNG, JPEG or WebP of at
    most `max_pixels` pixels (Pillow's decompression-bomb guard included).

    The size is the upright one: EXIF orientation is read from the header (a PNG's eXIf chunk
    after the image data is not: reaching it means decoding). Data whose pixels are truncated or
    corrupt passes; the worker's `open_image` refuses it. Every failure is InvalidInput naming
    the field, with the same messages as `open_image`.
    """
    with refused_as_invalid(field, max_pixels):
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        check_pixels(field, image.size, max_pixels)
        width, height = image.size
        if header_orientation(image) in _TURNED:
            width, height = height, width
        return ImageInfo(format=str(image.format), width=width, height=height)


def header_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright) from what `Image.open` parsed; never decodes pixels."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # PngImageFile.getexif would decode the image to look for an eXIf chunk after it
    return int(image.getexif().get(ExifTags.Base.Orientation, 1))


def open_image(field: str, data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode `data` as PNG, JPEG or WebP after checking its size from the header alone.

    Returns the first frame, turned upright by its EXIF orientation, in an 8-bit
    mode (16-bit and float greys are scaled down). Every failure is InvalidInput
    naming the field.
    """
    with refused_as_invalid(field, max_pixels):
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        check_pixels(field, image.size, max_pixels)
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
        return to_8bit(ImageOps.exif_transpose(image))


@contextmanager
def refused_as_invalid(field: str, max_pixels: int) -> Iterator[None]:
    """Any failure to read an image inside the block as InvalidInput naming the field; only the
    exception's type reaches the log."""
    try:
        yield
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


def _shorten(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
