"""Control images from a depth estimator: `depth` and `normal_map`."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

METRIC_MODEL_TYPES = frozenset({"zoedepth"})
"""Model types whose output is metric depth (far = larger), not relative inverse depth (near = larger)."""


class DepthEstimator:
    """A transformers depth-estimation model and its image processor. Not thread-safe.

    Called on an image it returns an RGB depth map at the image's size, normalised to 0-255, near = bright:
    relative inverse depth (DPT/MiDaS, Depth Anything) is scaled as it is, metric depth (ZoeDepth) inverted.
    """

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.metric = getattr(model.config, "model_type", None) in METRIC_MODEL_TYPES

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
        if self.metric:
            scaled = 1 - scaled
        pixels = (scaled * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return Image.fromarray(np.stack([pixels] * 3, axis=-1))


def normals_from_depth(depth_map: Image.Image) -> Image.Image:
    """Surface normals of a depth map (near = bright), the way "normal from MiDaS depth" processors make them.

    The surface is z = depth; its normal (-dz/dx, -dz/dy, 1), normalised, is written as RGB with each
    component mapped from [-1, 1] to 0-255: R = x (to the right), G = y (up), B = z (toward the viewer).
    A flat map gives (128, 128, 255); a surface whose near side is on the right faces left (R < 128).
    """
    gray = np.asarray(depth_map.convert("L"), dtype=np.float32)
    z = gray / 255.0 * max(gray.shape)  # the 0-1 depth range is taken as deep as the longer side is long
    dz_dx = cv2.Sobel(z, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    dz_down = cv2.Sobel(z, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    normal = np.stack([-dz_dx, dz_down, np.ones_like(z)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return Image.fromarray(np.clip(np.round(normal * 127.5 + 127.5), 0, 255).astype(np.uint8))
