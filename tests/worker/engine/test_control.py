"""The control-image processors (worker.engine.control) on small drawn images, asserted on pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from storage.contract.processors import ANNOTATOR_MODULES, DEPTH_MODELS, IMPLEMENTED
from tests.support.images import scene
from worker.engine.control import PURE, make_control_image
from worker.engine.control.annotators import MODULES
from worker.engine.control.colours import colour_grid, shuffle_tiles
from worker.engine.control.depth import normals_from_depth
from worker.engine.control.lines import binary_strokes, inverted, line_segments, lineart_standard, xdog_scribble


def drawing(size: int = 96) -> Image.Image:
    """Black strokes on white paper: a long straight line across the middle and a small circle."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(8, size // 2), (size - 8, size // 2)], fill="black", width=2)
    draw.ellipse([10, 10, 26, 26], outline="black", width=2)
    return image


def as_array(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


class FlatDepth:
    """Stands in for the depth estimator: a fixed depth map, whatever the image."""

    def __init__(self, depth: Image.Image) -> None:
        self.depth = depth

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.depth.convert("RGB")


def test_every_implemented_name_makes_an_rgb_image_of_the_input_size() -> None:
    """Each name of the contract runs: pure, on a depth estimator, or on its tiny random annotator network."""
    depth = FlatDepth(Image.new("L", (80, 48), 100))
    annotators = {name: module.from_states(module.tiny_states()) for name, module in MODULES.items()}
    for name in IMPLEMENTED:
        annotator = annotators[ANNOTATOR_MODULES[name]] if name in ANNOTATOR_MODULES else None
        out = make_control_image(name, scene((80, 48)), depth=depth, annotator=annotator)  # type: ignore[arg-type]
        assert out.mode == "RGB" and out.size == (80, 48), name
    assert set(PURE) | set(DEPTH_MODELS) | set(ANNOTATOR_MODULES) == set(IMPLEMENTED)


def test_the_contracts_annotator_names_are_the_modules_own() -> None:
    for module_name, module in MODULES.items():
        assert {p for p, m in ANNOTATOR_MODULES.items() if m == module_name} == set(module.PROCESSORS), module_name
    assert set(MODULES) == set(ANNOTATOR_MODULES.values())


@pytest.mark.parametrize("processor", [line_segments, xdog_scribble, lineart_standard, binary_strokes, inverted])
def test_line_processors_draw_white_where_the_strokes_are_and_black_on_blank_paper(processor) -> None:
    out = as_array(processor(drawing()))[..., 0]
    assert out[44:52, 20:76].max() >= 127, "the long line must appear"
    assert out[70:90, 40:90].max() == 0, "blank paper stays black"
    assert out.mean() < 64, "white lines on black, not the other way round"


def test_mlsd_keeps_straight_lines_and_drops_the_circle() -> None:
    out = as_array(line_segments(drawing(192)))[..., 0]  # segments under 12 px (1/16 of 192) are dropped
    assert set(np.unique(out)) <= {0, 255}
    assert out[92:100, 20:170].any(axis=0).mean() > 0.9, "the straight line is traced along its length"
    assert out[4:32, 4:32].max() == 0, "a small circle is no straight segment"


def test_binary_and_scribble_are_two_level_and_lineart_is_graded() -> None:
    for processor in (binary_strokes, xdog_scribble):
        assert set(np.unique(as_array(processor(drawing())))) <= {0, 255}
    assert len(np.unique(as_array(lineart_standard(scene())))) > 2


def test_invert_is_its_own_inverse() -> None:
    assert np.array_equal(as_array(inverted(inverted(scene()))), as_array(scene()))


def test_shuffle_keeps_every_colour_and_moves_the_layout() -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 72, 3), dtype=np.uint8))
    original, out = as_array(image), as_array(shuffle_tiles(image))
    for channel in range(3):
        assert np.array_equal(
            np.bincount(original[..., channel].ravel(), minlength=256),
            np.bincount(out[..., channel].ravel(), minlength=256),
        )
    assert (out != original).any(axis=-1).mean() > 0.5, "most tiles move"
    assert np.array_equal(out, as_array(shuffle_tiles(image))), "the same image shuffles the same way"


def test_color_is_a_grid_of_mean_colours() -> None:
    left_red = Image.new("RGB", (128, 128), (0, 0, 255))
    left_red.paste((255, 0, 0), (0, 0, 64, 128))
    out = as_array(colour_grid(left_red))
    assert (out[:, :64] == (255, 0, 0)).all() and (out[:, 64:] == (0, 0, 255)).all()
    assert len(np.unique(as_array(colour_grid(scene((256, 256)))).reshape(-1, 3), axis=0)) <= 16


def test_normal_map_of_a_flat_and_a_sloped_depth() -> None:
    flat = as_array(normals_from_depth(Image.new("L", (32, 32), 90)))
    assert (flat == (128, 128, 255)).all(), "a flat surface faces the viewer"
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.float32), (64, 1)).astype(np.uint8))
    normals = as_array(normals_from_depth(ramp))[8:56, 8:56].astype(int)
    assert (normals[..., 0] < 100).all(), "near on the right: the surface faces left"
    assert (abs(normals[..., 1] - 128) <= 1).all() and (normals[..., 2] > 128).all()


def test_normal_map_runs_the_depth_estimator() -> None:
    depth = FlatDepth(Image.new("L", (64, 64), 10))
    normals = make_control_image("normal_map", scene(), depth=depth)  # type: ignore[arg-type]
    assert (as_array(normals) == (128, 128, 255)).all()
    with pytest.raises(RuntimeError, match="depth estimator"):
        make_control_image("normal_map", scene())
    with pytest.raises(RuntimeError, match="annotator network"):
        make_control_image("hed", scene())
