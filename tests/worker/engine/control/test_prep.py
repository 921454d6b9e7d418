"""The pre- and post-processing the ControlNet 1.1 annotators share (worker.engine.control.prep), on hand-made
images and arrays."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from worker.engine.control.prep import detect_size, nms, resize_for_detection, rgb_on_white, safe_step, scribble_strokes


def test_rgb_on_white_composites_transparency_over_white_and_keeps_opaque_pixels() -> None:
    clear = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    clear.putpixel((0, 0), (0, 0, 0, 255))
    clear.putpixel((1, 0), (0, 0, 0, 128))
    pixels = rgb_on_white(clear)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 4, 3)
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert pixels[0, 1].tolist() == [126] * 3, "255 x (1 - 128/255) in float32, truncated, as the reference does"
    assert (pixels[1] == 255).all()
    opaque = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    assert np.array_equal(rgb_on_white(Image.fromarray(opaque)), opaque)
    assert rgb_on_white(Image.new("L", (2, 2), 7)).tolist() == [[[7] * 3] * 2] * 2
    palette = Image.new("P", (2, 1))  # transparency in the palette itself, not in an alpha band
    palette.putpalette([0, 0, 0, 0, 0, 0, 0, 255], rawmode="RGBA")
    palette.putpixel((1, 0), 1)
    assert rgb_on_white(palette)[0].tolist() == [[255] * 3, [0] * 3]
    keyed = Image.new("P", (2, 1))
    keyed.putpalette([0, 0, 0, 9, 9, 9])
    keyed.putpixel((1, 0), 1)
    keyed.info["transparency"] = 0
    assert rgb_on_white(keyed)[0].tolist() == [[255] * 3, [9] * 3]


def test_detect_size_puts_the_shorter_side_at_the_resolution_in_multiples_of_64() -> None:
    assert detect_size(96, 80) == (640, 512)
    assert detect_size(80, 48) == (832, 512)  # 853.3 -> 832
    assert detect_size(1024, 768) == (704, 512)
    assert detect_size(150, 100) == (768, 512)
    assert detect_size(500, 300) == (832, 512)
    assert detect_size(512, 2000) == (512, 2000 // 64 * 64)
    assert detect_size(300, 200, resolution=256) == (384, 256)
    assert detect_size(96, 80, resolution=128) == (128, 128)
    assert detect_size(40, 30, resolution=16) == (64, 64), "never below one multiple"


def test_resize_for_detection_uses_lanczos_to_enlarge_and_area_to_shrink() -> None:
    assert resize_for_detection(np.zeros((48, 80, 3), np.uint8)).shape == (512, 832, 3)
    assert resize_for_detection(np.zeros((80, 96, 3), np.uint8)).shape == (512, 640, 3)
    assert resize_for_detection(np.zeros((700, 1000, 3), np.uint8)).shape == (512, 704, 3)
    assert resize_for_detection(np.zeros((1000, 3000, 3), np.uint8)).shape == (512, 1536, 3)
    assert resize_for_detection(np.zeros((64, 64, 3), np.uint8), 64).shape == (64, 64, 3)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    enlarged = cv2.resize(pixels, (192, 128), interpolation=cv2.INTER_LANCZOS4)
    assert np.array_equal(resize_for_detection(pixels, 128), enlarged)
    shrunk = resize_for_detection(pixels, 32)  # 48 x 32 -> 64 x 64: the height grows, but the shorter side shrinks
    assert np.array_equal(shrunk, cv2.resize(pixels, (64, 64), interpolation=cv2.INTER_AREA))
    assert not np.array_equal(shrunk, cv2.resize(pixels, (64, 64), interpolation=cv2.INTER_LANCZOS4))


def test_safe_step_quantises_to_three_levels_in_float32_as_the_reference() -> None:
    expected = [0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.5]
    p = np.array([0.0, 0.33, 0.34, 0.66, 0.67, 0.999, 1.0])
    assert safe_step(p).tolist() == expected and safe_step(p).dtype == np.float32
    assert safe_step(np.array([0.0, 0.2, 0.34, 0.5, 0.67, 0.99, 1.0], np.float32)).tolist() == expected
    assert safe_step(np.array([0.1, 0.5, 0.99]), steps=4).tolist() == [0.0, 0.5, 1.0]


def test_nms_keeps_the_blurred_directional_maxima_above_127() -> None:
    """Without blur (a tiny sigma): in the 5 x 5 patch the 150 in the middle has a brighter neighbour on every
    line through it (left, up and both upper diagonals are 200), so it goes; the 200s are maxima along a row;
    the 100s are maxima but not above 127. A ramp rising right, down and down-left keeps only the pixels on
    its borders, where outside counts as lower. With sigma 3, a 15 px square of 255: the middle row and column
    are maxima across themselves (kept out to 7 px from the centre, about 109 at 8 px); a point 1 px and 3 px
    off the centre is about 234 but has a brighter neighbour on every line through it, so it goes."""
    edges = np.zeros((5, 5), np.uint8)
    edges[1:4, 1:4] = [[200, 200, 200], [200, 150, 100], [100, 100, 100]]
    expected = np.zeros((5, 5), np.uint8)
    expected[1, 1:4] = 255
    expected[2, 1] = 255
    assert (nms(edges, sigma=0.01) == expected).all()
    assert (nms(np.full((3, 3), 128, np.uint8), sigma=0.01) == 255).all(), "flat counts as a maximum"
    assert (nms(np.full((3, 3), 127, np.uint8), sigma=0.01) == 0).all(), "strictly above 127"
    rows, cols = np.mgrid[0:4, 0:4]
    ramp = (10 + cols + 2 * rows).astype(np.uint8)
    kept = [[1, 0, 0, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
    assert (nms(ramp, threshold=0, sigma=0.01) == 255 * np.array(kept)).all()
    square = np.zeros((41, 41), np.uint8)
    square[13:28, 13:28] = 255
    c = 20
    thin = nms(square)
    assert set(np.unique(thin)) == {0, 255}
    assert np.flatnonzero(thin[c]).tolist() == list(range(c - 7, c + 8))
    assert np.flatnonzero(thin[:, c]).tolist() == list(range(c - 7, c + 8))
    for dr, dc in [(1, 3), (3, 1), (-1, 3), (3, -1), (1, -3), (-3, 1), (-1, -3), (-3, -1)]:
        assert thin[c + dr, c + dc] == 0, (dr, dc)
    assert nms(square, sigma=0.01)[c + 1, c + 3] == 255, "unblurred, the flat square stays whole"
    assert nms(square, threshold=255).max() == 0, "nothing blurred reaches 255"
    narrow = np.zeros((21, 21), np.uint8)
    narrow[10] = 255  # one row blurs to about 34: nothing
    assert not nms(narrow).any()


def test_scribble_strokes_are_binary_and_cover_the_ridge() -> None:
    edges = np.zeros((40, 40), np.uint8)
    edges[16:23] = 255
    strokes = scribble_strokes(edges)
    assert set(np.unique(strokes)) == {0, 255}
    assert (strokes[16:23] == 255).all() and not strokes[:4].any() and not strokes[-4:].any()
    assert ((strokes == 255).sum(axis=0) >= 7).all(), "every column crosses the stroke"
    assert not scribble_strokes(np.full((16, 16), 100, np.uint8)).any(), "nothing above 127: no strokes"
    assert not scribble_strokes(np.zeros((32, 32), np.uint8)).any()
