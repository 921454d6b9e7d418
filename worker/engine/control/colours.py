"""Colour control images made without a model: `color` and `shuffle`. Each returns RGB at the input's
size."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

COLOUR_CELL = 64
"""color: the image is shrunk this many times on each side (at least to 1 px)."""
SHUFFLE_TILES = 8
"""shuffle: tiles per side of the square area the tiles cover."""
SHUFFLE_SEED = 0
"""shuffle: the permutation is fixed, so a job is reproducible from its seed."""


def colour_grid(image: Image.Image) -> Image.Image:
    """A coarse colour layout: the image shrunk COLOUR_CELL times (area averaging), then enlarged back
    with nearest-neighbour, so each cell holds one flat colour: the mean of the pixels it covers."""
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    small = cv2.resize(
        pixels, (max(1, width // COLOUR_CELL), max(1, height // COLOUR_CELL)), interpolation=cv2.INTER_AREA
    )
    return Image.fromarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST))


def shuffle_tiles(image: Image.Image) -> Image.Image:
    """Content shuffle: the image cut into SHUFFLE_TILES x SHUFFLE_TILES tiles and the tiles permuted
    (fixed seed); strips left over when a side does not divide stay in place. Colours and textures
    survive, the layout does not; every pixel value is kept, so the colour histogram is unchanged."""
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    th, tw = height // SHUFFLE_TILES, width // SHUFFLE_TILES
    if th == 0 or tw == 0:
        return Image.fromarray(pixels.copy())
    out = pixels.copy()
    area = pixels[: th * SHUFFLE_TILES, : tw * SHUFFLE_TILES]
    tiles = area.reshape(SHUFFLE_TILES, th, SHUFFLE_TILES, tw, 3).swapaxes(1, 2).reshape(-1, th, tw, 3)
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(tiles))
    shuffled = tiles[order].reshape(SHUFFLE_TILES, SHUFFLE_TILES, th, tw, 3).swapaxes(1, 2)
    out[: th * SHUFFLE_TILES, : tw * SHUFFLE_TILES] = shuffled.reshape(th * SHUFFLE_TILES, tw * SHUFFLE_TILES, 3)
    return Image.fromarray(out)
