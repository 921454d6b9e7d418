"""A job's inputs, read back from object storage and decoded.

The API checks each input from its header alone and stores the bytes as sent (PNG,
JPEG or WebP); older jobs hold PNGs the API re-encoded, already at matching sizes.
Both decode here the same way, under the limits the API checked
(INPAINT_MAX_IMAGE_PIXELS, Pillow's decompression-bomb guard): the image as RGB,
the mask thresholded and at the image's size. A job without a mask (inpaint-auto)
repaints everything. An input that cannot be decoded fails the job (`invalid_input`,
naming the field); it is never retried, since every run would read the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PIL import Image

from storage.blobs.images import open_image, to_mask, to_rgb
from storage.blobs.store import in_parallel
from storage.errors import InvalidInput, JobFailure

Inputs = tuple[Image.Image, Image.Image]
"""image: mode RGB; mask: mode L at the image's size, 255 = repaint, 0 = keep."""


def read_inputs(get: Callable[[str], bytes], keys: dict[str, str], *, max_pixels: int) -> Inputs:
    """A job's image and mask from their stored bytes (both read at once), decoded. `keys`: blob
    keys by role; no "mask" key means an all-white mask. Raises JobFailure when one cannot be decoded."""
    roles = [role for role in ("image", "mask") if role in keys]
    stored = dict(zip(roles, in_parallel([partial(get, keys[role]) for role in roles]), strict=True))
    return decode_inputs(stored["image"], stored.get("mask"), max_pixels=max_pixels)


def decode_inputs(image: bytes, mask: bytes | None, *, max_pixels: int) -> Inputs:
    """Decode the image (flattened to RGB) and the mask (to_mask at the image's size; None: all
    255). A failure is JobFailure("invalid_input", "<field>: could not be decoded as ...")."""
    try:
        rgb = to_rgb(open_image("image", image, max_pixels=max_pixels))
        if mask is None:
            return rgb, Image.new("L", rgb.size, 255)
        return rgb, to_mask(open_image("mask", mask, max_pixels=max_pixels), rgb.size)
    except InvalidInput as exc:
        raise JobFailure("invalid_input", exc.message) from None
