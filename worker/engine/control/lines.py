"""Line and edge control images made without a model. Each returns RGB, white lines on black, at the
input's size."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

CANNY_THRESHOLDS = (100, 200)
XDOG_SIGMAS = (0.5, 5.0)
XDOG_THRESHOLD = 32
"""scribble_xdog: a pixel is a stroke where the fine blur is this much darker than the coarse one."""
LINEART_SIGMA = 6.0
MIN_SEGMENT = 1 / 16
"""mlsd: the shortest segment kept, as a fraction of the image's shorter side."""


def to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.stack([gray.astype(np.uint8)] * 3, axis=-1))


def gray_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.uint8)


def canny_edges(image: Image.Image) -> Image.Image:
    """OpenCV's Canny detector, thresholds 100 and 200: edges 255, the rest 0."""
    return to_rgb(cv2.Canny(gray_of(image), *CANNY_THRESHOLDS))


def line_segments(image: Image.Image) -> Image.Image:
    """Straight line segments (OpenCV's line segment detector), drawn 1 px wide at 255 on 0; segments
    shorter than MIN_SEGMENT of the shorter side are dropped, so texture and curves leave no line."""
    gray = gray_of(image)
    found = cv2.createLineSegmentDetector().detect(gray)[0]
    canvas = np.zeros_like(gray)
    shortest = MIN_SEGMENT * min(gray.shape)
    for x1, y1, x2, y2 in [] if found is None else found.reshape(-1, 4):
        if np.hypot(x2 - x1, y2 - y1) >= shortest:
            cv2.line(canvas, (round(x1), round(y1)), (round(x2), round(y2)), 255, 1, cv2.LINE_AA)
    return to_rgb(np.where(canvas > 0, 255, 0))


def xdog_scribble(image: Image.Image) -> Image.Image:
    """Scribble by difference of Gaussians: 255 where the image blurred at sigma 0.5 is darker by more
    than XDOG_THRESHOLD than the image blurred at sigma 5 (the dark side of each edge), else 0."""
    gray = gray_of(image).astype(np.float32)
    fine, coarse = (cv2.GaussianBlur(gray, (0, 0), sigma) for sigma in XDOG_SIGMAS)
    return to_rgb(np.where(coarse - fine > XDOG_THRESHOLD, 255, 0))


def lineart_standard(image: Image.Image) -> Image.Image:
    """Line art by Gaussian difference: how much darker each pixel is than its neighbourhood (sigma 6),
    the darkest channel counted, scaled so a typical line (the median of the clearly dark pixels) is
    127; 0 where a pixel is no darker than its surroundings. Grey levels, not a binary mask."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    darker = (cv2.GaussianBlur(pixels, (0, 0), LINEART_SIGMA) - pixels).min(axis=-1).clip(0, 255)
    dark = darker[darker > 8]
    typical = max(16.0, float(np.median(dark))) if dark.size else 16.0
    return to_rgb((darker / typical * 127).clip(0, 255).round())


def binary_strokes(image: Image.Image) -> Image.Image:
    """Otsu's threshold on the grey image, inverted: dark pixels (strokes on paper) 255, light ones 0."""
    _, strokes = cv2.threshold(gray_of(image), 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return to_rgb(strokes)


def inverted(image: Image.Image) -> Image.Image:
    """255 minus each RGB value: a black-on-white drawing becomes white lines on black."""
    return Image.fromarray(255 - np.asarray(image.convert("RGB")))
