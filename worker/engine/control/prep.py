"""The pre- and post-processing the ControlNet 1.1 annotators share (hed, pidinet, lineart, openpose), as the
reference annotators (controlnet_aux, ControlNet-v1-1's annotator package) do it.

Conventions:
- Input: the image as uint8 RGB (H, W, 3), transparent parts composited over white (the reference's HWC3).
- Detection size: the image is resized so that its shorter side is `resolution` (DETECT_RESOLUTION, 512) and
  each side is then rounded to the nearest multiple of SIDE_MULTIPLE (64): Lanczos when enlarging (the
  shorter side grows), area averaging otherwise.
- Post-processing of an edge map (uint8, H x W, 255 = edge): `safe_step` quantises the probabilities before
  the 8-bit step; `nms` thins the map to its ridges; `scribble_strokes` makes binary white strokes on black.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

DETECT_RESOLUTION = 512
"""The shorter side the networks see, as in the reference annotators (their `detect_resolution`)."""
SIDE_MULTIPLE = 64
"""Both sides the networks see are multiples of this (rounded to the nearest, at least one multiple)."""
SAFE_STEPS = 2
NMS_THRESHOLD = 127
"""nms keeps the blurred map's directional maxima above this level."""
SCRIBBLE_SIGMA = 3.0
"""The Gaussian blur of nms and, after it, of scribble_strokes."""
SCRIBBLE_LEVEL = 4
"""scribble_strokes: after thinning and a second blur, a pixel above this is a stroke (255), the rest 0."""
NMS_LINES = tuple(
    np.array(kernel, dtype=np.uint8)
    for kernel in (
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],  # horizontal
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],  # vertical
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],  # diagonal
        [[0, 0, 1], [0, 1, 0], [1, 0, 0]],  # anti-diagonal
    )
)
"""The 3-pixel lines through a pixel along which nms looks for a local maximum."""


def rgb_on_white(image: Image.Image) -> np.ndarray:
    """The image as uint8 RGB (H, W, 3), transparent parts composited over white (as the reference's HWC3):
    each channel c becomes c * a + 255 * (1 - a) in float32, a = alpha / 255, truncated to 8 bits. An image
    without transparency data is only converted to RGB (the same pixels, without the float arithmetic)."""
    if not image.has_transparency_data:
        return np.asarray(image.convert("RGB"))
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    alpha = rgba[..., 3:] / 255.0
    return np.asarray((rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8))


def detect_size(width: int, height: int, resolution: int = DETECT_RESOLUTION) -> tuple[int, int]:
    """(width, height) the networks see: scaled so the shorter side is `resolution`, each side then rounded to
    the nearest multiple of SIDE_MULTIPLE, at least one (for example 80x48 -> 832x512, 1024x768 -> 704x512)."""
    scale = resolution / min(width, height)
    return (
        max(SIDE_MULTIPLE, round(width * scale / SIDE_MULTIPLE) * SIDE_MULTIPLE),
        max(SIDE_MULTIPLE, round(height * scale / SIDE_MULTIPLE) * SIDE_MULTIPLE),
    )


def resize_for_detection(pixels: np.ndarray, resolution: int = DETECT_RESOLUTION) -> np.ndarray:
    """`pixels` (H, W, C) resized to detect_size: Lanczos when enlarging (`resolution` above the shorter side),
    area averaging otherwise."""
    height, width = pixels.shape[:2]
    interpolation = cv2.INTER_LANCZOS4 if resolution > min(width, height) else cv2.INTER_AREA
    return np.asarray(cv2.resize(pixels, detect_size(width, height, resolution), interpolation=interpolation))


def safe_step(probability: np.ndarray, steps: int = SAFE_STEPS) -> np.ndarray:
    """The reference's quantisation, in float32: floor(p * (steps + 1)) / steps. With 2 steps, p below 1/3
    becomes 0, below 2/3 0.5, else 1 (1.5 at exactly p = 1, clipped later)."""
    levels = (probability.astype(np.float32) * np.float32(steps + 1)).astype(np.int32)
    return np.asarray(levels.astype(np.float32) / np.float32(steps))


def nms(edges: np.ndarray, threshold: float = NMS_THRESHOLD, sigma: float = SCRIBBLE_SIGMA) -> np.ndarray:
    """The reference's non-maximum suppression of an edge map (uint8, H x W): blurred with `sigma`, a pixel is
    255 where it is no lower than its two neighbours along at least one of NMS_LINES (outside the image counts
    as lower) and above `threshold`; 0 elsewhere."""
    blurred = cv2.GaussianBlur(edges.astype(np.float32), (0, 0), sigma)
    ridge = np.zeros(blurred.shape, dtype=bool)
    for line in NMS_LINES:
        ridge |= cv2.dilate(blurred, kernel=line) == blurred
    return np.where(ridge & (blurred > threshold), 255, 0).astype(np.uint8)


def scribble_strokes(edges: np.ndarray) -> np.ndarray:
    """Binary strokes from an edge map (uint8, H x W), as the reference's scribble: `nms`, a Gaussian blur of
    sigma SCRIBBLE_SIGMA (in 8 bits), then 255 where the blur is above SCRIBBLE_LEVEL, else 0."""
    blurred = cv2.GaussianBlur(nms(edges), (0, 0), SCRIBBLE_SIGMA)
    return np.where(blurred > SCRIBBLE_LEVEL, 255, 0).astype(np.uint8)
