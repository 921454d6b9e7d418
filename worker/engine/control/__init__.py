"""Control images for ControlNet inpainting (`cn_processor`).

The names, and what a name that cannot run here does, live in storage.contract.processors; this
package implements its `IMPLEMENTED` processors, each a small pure function:

- lines: `canny`, `mlsd`, `scribble_xdog`, `lineart_standard`, `binary`, `invert` (white on black).
- colours: `color` (a coarse colour grid) and `shuffle` (tiles shuffled, colours kept).
- depth: the depth processors (a registered depth estimator, near = bright) and `normal_map` (normals).
- hed, pidinet, lineart, openpose: the ControlNet 1.1 annotator networks, loaded by `annotators`.
- `none`: the input image as given.

Every control image is RGB at the size of the image it was made from.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from storage.contract.processors import ANNOTATOR_MODULES, DEPTH_MODELS
from worker.engine.control.colours import colour_grid, shuffle_tiles
from worker.engine.control.depth import DepthEstimator, normals_from_depth
from worker.engine.control.lines import (
    binary_strokes,
    canny_edges,
    inverted,
    line_segments,
    lineart_standard,
    xdog_scribble,
)

__all__ = ["Annotator", "DepthEstimator", "canny_edges", "make_control_image"]

Annotator = Callable[[Image.Image, str], Image.Image]
"""annotator(image, processor): an annotator network's control image (worker.engine.control.annotators)."""

PURE: dict[str, Callable[[Image.Image], Image.Image]] = {
    "none": lambda image: image.convert("RGB"),
    "canny": canny_edges,
    "mlsd": line_segments,
    "scribble_xdog": xdog_scribble,
    "lineart_standard": lineart_standard,
    "binary": binary_strokes,
    "invert": inverted,
    "color": colour_grid,
    "shuffle": shuffle_tiles,
}
"""The processors that need no model."""


def make_control_image(
    processor: str, image: Image.Image, *, depth: DepthEstimator | None = None, annotator: Annotator | None = None
) -> Image.Image:
    """The control image of `image` for `processor` (a resolved name: see storage.contract.processors);
    `depth` or `annotator`: the model the processor runs (storage.contract.processors says which)."""
    if processor in PURE:
        return PURE[processor](image)
    if processor in DEPTH_MODELS:
        if depth is None:
            raise RuntimeError(f"the {processor} processor needs a depth estimator")
        depth_map = depth(image)
        return normals_from_depth(depth_map) if processor == "normal_map" else depth_map
    if processor in ANNOTATOR_MODULES:
        if annotator is None:
            raise RuntimeError(f"the {processor} processor needs its annotator network")
        return annotator(image, processor)
    raise ValueError(f"unknown cn_processor {processor!r}")
