"""Inpainting quality controls beyond the seeds: invert_mask, mask_blur, inpaint_only_masked + mask_padding.

These live in the pure `inpaint` function, so they hold for every family; erase
(deterministic, no weights) and a recording inpainter make the pixels exact.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from storage.contract.params import JobParams, MaskParams
from tests.support.images import box_mask, scene
from worker.engine.inference import crop_box, inpaint


class Painter:
    """An inpainter that paints every pixel one colour and records what it was given."""

    def __init__(self, colour: tuple[int, int, int] = (255, 0, 255)) -> None:
        self.colour = colour
        self.calls: list[tuple[Image.Image, Image.Image]] = []

    def __call__(self, params, image, mask, *, on_step, components=None):
        self.calls.append((image, mask))
        on_step(1, 1)
        return [Image.new("RGB", image.size, self.colour) for _ in range(params.samples)]


def params(**mask: object) -> JobParams:
    return JobParams(
        prompt="p",
        negative_prompt=None,
        samples=1,
        scheduler="DDIM",
        num_inference_steps=2,
        guidance_scale=7.5,
        strength=1.0,
        seed=1,
        width=64,
        height=64,
        mask=MaskParams(**mask),
    )


def run(painter, image=None, mask=None, **options: object) -> np.ndarray:
    out = inpaint(painter, params(**options), image or scene(), mask or box_mask(), on_step=lambda s, t: None)
    return np.asarray(out[0]).astype(int)


def test_invert_mask_repaints_the_black_area() -> None:
    out = run(Painter(), invert=True)
    hole = np.asarray(box_mask()) > 127
    assert np.array_equal(out[hole], np.asarray(scene()).astype(int)[hole]), "the white area is kept"
    assert (out[~hole] == (255, 0, 255)).all()


def test_mask_blur_feathers_only_a_band_of_its_width() -> None:
    radius = 4
    out = run(Painter(), blur=radius)
    original = np.asarray(scene()).astype(int)
    hole = np.asarray(box_mask()) > 127
    distance = ndimage.distance_transform_cdt(~hole, metric="chessboard")
    far = distance > radius
    assert np.array_equal(out[far], original[far]), "pixels beyond the band must be the input's"
    band = (distance >= 1) & (distance <= 2)
    assert (out[band] != original[band]).any(axis=-1).all(), "the band next to the mask blends in"
    assert not np.array_equal(run(Painter(), blur=0), out)


def test_crop_box_keeps_the_mask_and_the_aspect_ratio() -> None:
    mask = Image.new("L", (400, 300), 0)
    mask.paste(255, (100, 120, 140, 150))
    box = crop_box(mask, 10, (64, 32))
    x1, y1, x2, y2 = box
    assert x1 <= 90 and y1 <= 110 and x2 >= 150 and y2 >= 160, box
    assert abs((x2 - x1) / (y2 - y1) - 2) < 0.05
    assert 0 <= x1 and 0 <= y1 and x2 <= 400 and y2 <= 300
    assert crop_box(Image.new("L", (50, 40), 0), 0, (50, 40)) == (0, 0, 50, 40), "no mask: the whole image"


def test_only_masked_works_on_a_crop_at_full_resolution() -> None:
    big = scene((256, 192))
    mask = Image.new("L", big.size, 0)
    mask.paste(255, (120, 90, 140, 110))
    painter = Painter()
    out = run(painter, big, mask, only_masked=True, padding=6)
    assert out.shape == (192, 256, 3), "the output keeps the input's size"
    crop, crop_mask = painter.calls[0]
    assert crop.size == (64, 64), "the crop is inpainted at the job's size"
    assert 0.05 < (np.asarray(crop_mask) > 127).mean() < 0.6, "the mask fills a good part of the crop"
    hole = np.asarray(mask) > 127
    assert (out[hole] == (255, 0, 255)).all()
    assert np.array_equal(out[~hole], np.asarray(big).astype(int)[~hole])


def test_only_masked_with_erase_and_a_tiny_diffusion_model(bench) -> None:
    big = scene((160, 96))
    mask = Image.new("L", big.size, 0)
    mask.paste(255, (60, 30, 90, 60))
    hole = np.asarray(mask) > 127
    for slug in ("erase", "tiny-sd15"):
        images, _ = bench.run(
            slug,
            {"inpaint_only_masked": True, "mask_padding": 8, "img_width": 64, "img_height": 64},
            big,
            mask,
        )
        out = np.asarray(images[0])
        assert out.shape == (96, 160, 3)
        assert np.array_equal(out[~hole], np.asarray(big)[~hole])
        assert not np.array_equal(out[hole], np.asarray(big)[hole])
