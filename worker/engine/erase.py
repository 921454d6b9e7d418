"""`erase`: OpenCV's Telea inpainting. No weights, no prompt; fills the mask from its border."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

from storage.contract.params import JobParams
from worker.engine.types import StepCallback


class EraseInpainter:
    """Deterministic: every sample is the same image, and the prompt, seed and scheduler are unused."""

    def __call__(
        self,
        params: JobParams,
        image: Image.Image,
        mask: Image.Image,
        *,
        on_step: StepCallback,
        components: Any = None,
    ) -> list[Image.Image]:
        rgb = np.asarray(image.convert("RGB"))
        holes = np.asarray(mask.convert("L"))
        radius = max(3, min(image.size) // 64)
        filled = cv2.inpaint(np.ascontiguousarray(rgb[:, :, ::-1]), holes, radius, cv2.INPAINT_TELEA)
        on_step(1, 1)
        result = Image.fromarray(np.ascontiguousarray(filled[:, :, ::-1]))
        return [result.copy() for _ in range(params.samples)]
