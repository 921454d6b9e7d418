"""Control images for ControlNet inpainting (`cn_processor`).

- `canny`: OpenCV's Canny edge detector, thresholds 100 and 200, white edges on black.
- `depth`: a transformers depth-estimation model (the registered `depth` estimator,
  Intel/dpt-hybrid-midas by default), normalised to 0-255, near = bright.
- `none`: the input image as given (send an edge map, depth map or pose image yourself).

Every control image is RGB at the size of the image it was made from.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

CANNY_THRESHOLDS = (100, 200)


def canny_edges(image: Image.Image) -> Image.Image:
    gray = np.asarray(image.convert("L"))
    edges = cv2.Canny(gray, *CANNY_THRESHOLDS)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


class DepthEstimator:
    """A transformers depth-estimation model and its image processor. Not thread-safe."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor

    def __call__(self, image: Image.Image) -> Image.Image:
        device = next(self.model.parameters()).device
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt").to(device)
        with torch.no_grad():
            depth = self.model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(
            depth[:, None].float(), size=(image.height, image.width), mode="bicubic", align_corners=False
        )[0, 0]
        low, high = depth.min(), depth.max()
        scaled = (depth - low) / (high - low) if high > low else torch.zeros_like(depth)
        pixels = (scaled * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return Image.fromarray(np.stack([pixels] * 3, axis=-1))


def make_control_image(processor: str, image: Image.Image, depth: DepthEstimator | None) -> Image.Image:
    """The control image of `image` for `processor` (canny, depth or none)."""
    if processor == "canny":
        return canny_edges(image)
    if processor == "depth":
        if depth is None:
            raise RuntimeError("the depth processor needs a depth estimator")
        return depth(image)
    if processor == "none":
        return image.convert("RGB")
    raise ValueError(f"unknown cn_processor {processor!r}")
