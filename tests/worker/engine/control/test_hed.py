"""HED soft edges (worker.engine.control.hed): the published layout, the input and output conventions on
hand-built networks, and every processor on a tiny random network (the shared pre- and post-processing is
test_prep's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from worker.engine.control.hed import (
    PROCESSORS,
    PUBLISHED_DEPTHS,
    PUBLISHED_WIDTHS,
    SAFE,
    SCRIBBLE,
    TINY_WIDTHS,
    WEIGHTS,
    Annotator,
    HEDNetwork,
    from_states,
    layout_of,
    tiny_states,
)
from worker.engine.control.prep import scribble_strokes

NAME = "ControlNetHED.pth"
PUBLISHED_TENSORS = 37  # norm, then weight and bias of 13 convolutions and 5 projections
PUBLISHED_PARAMETERS = 14_716_168
PUBLISHED_SHAPES = {
    "norm": (1, 3, 1, 1),
    "block1.convs.0.weight": (64, 3, 3, 3),
    "block1.convs.1.bias": (64,),
    "block1.projection.weight": (1, 64, 1, 1),
    "block2.convs.0.weight": (128, 64, 3, 3),
    "block3.convs.2.weight": (256, 256, 3, 3),
    "block3.projection.bias": (1,),
    "block4.convs.0.weight": (512, 256, 3, 3),
    "block5.convs.2.weight": (512, 512, 3, 3),
    "block5.convs.2.bias": (512,),
    "block5.projection.weight": (1, 512, 1, 1),
    "block5.projection.bias": (1,),
}


def drawing(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """Black shapes on white: a filled rectangle, a circle outline and a diagonal line."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([52, 12, 84, 40], fill="black")
    draw.ellipse([6, 6, 34, 34], outline="black", width=3)
    draw.line([(0, size[1] - 1), (size[0] - 1, 44)], fill="black", width=2)
    return image


def grey(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image)
    assert image.mode == "RGB" and (pixels == pixels[..., :1]).all(), "grey repeated in R, G and B"
    return pixels[..., 0]


def silent_states(side_biases: tuple[float, ...] = (0.0,) * 5) -> dict[str, torch.Tensor]:
    """Tiny-layout states with every tensor zero except the projections' biases: side output n is the constant
    side_biases[n - 1] whatever the image."""
    states = {key: torch.zeros_like(value) for key, value in tiny_states()[NAME].items()}
    for n, bias in enumerate(side_biases, start=1):
        states[f"block{n}.projection.bias"] = torch.tensor([bias])
    return states


def test_the_full_size_network_has_the_published_keys_and_shapes() -> None:
    states = HEDNetwork().state_dict()
    assert len(states) == PUBLISHED_TENSORS
    assert sum(t.numel() for t in states.values()) == PUBLISHED_PARAMETERS
    for key, shape in PUBLISHED_SHAPES.items():
        assert tuple(states[key].shape) == shape, key
    assert layout_of(states) == (list(PUBLISHED_WIDTHS), list(PUBLISHED_DEPTHS))
    assert WEIGHTS == (NAME,)


def test_widths_and_depths_are_read_from_the_tensors() -> None:
    states = tiny_states()[NAME]
    assert set(states) == set(HEDNetwork().state_dict()), "tiny states keep the published key names"
    network = from_states(tiny_states()).network
    assert [network.get_submodule(f"block{n}.projection").in_channels for n in range(1, 6)] == list(TINY_WIDTHS)
    assert [len(network.get_submodule(f"block{n}.convs")) for n in range(1, 6)] == list(PUBLISHED_DEPTHS)
    wide = HEDNetwork((8, 8, 16, 16, 32), (1, 2, 3, 2, 1)).state_dict()
    assert layout_of(wide) == ([8, 8, 16, 16, 32], [1, 2, 3, 2, 1])


def test_published_file_variants_load_as_float32_on_the_device() -> None:
    half_with_prefix = {f"module.{key}": value.half() for key, value in tiny_states()[NAME].items()}
    network = from_states({NAME: half_with_prefix}, device="cpu").network
    assert {p.dtype for p in network.parameters()} == {torch.float32}
    assert not network.training


def test_a_missing_key_a_wrong_shape_or_a_missing_file_is_a_value_error_naming_it() -> None:
    states = tiny_states()[NAME]
    del states["block3.convs.1.bias"]
    with pytest.raises(ValueError, match=r"ControlNetHED\.pth.*block3\.convs\.1\.bias"):
        from_states({NAME: states})
    misshapen = tiny_states()[NAME]
    misshapen["block2.convs.1.weight"] = torch.zeros(8, 8, 5, 5)
    with pytest.raises(ValueError, match=r"ControlNetHED\.pth.*block2\.convs\.1\.weight"):
        from_states({NAME: misshapen})
    with pytest.raises(ValueError, match=r"ControlNetHED\.pth"):
        from_states({"other.pth": tiny_states()[NAME]})
    with pytest.raises(ValueError, match=r"ControlNetHED\.pth: not HED weights"):
        from_states({NAME: {"norm": torch.zeros(1, 3, 1, 1)}})


def test_the_edge_map_is_the_sigmoid_of_the_mean_side_output_truncated_to_8_bits() -> None:
    # sigmoid(1) * 255 = 186.4, sigmoid(0) * 255 = 127.5, sigmoid(-1) * 255 = 68.6
    for biases, plain, safe in [((1, 2, 3, -1, 0), 186, 255), ((0,) * 5, 127, 127), ((-5, 0, 0, 0, 0), 68, 0)]:
        annotator = from_states({NAME: silent_states(tuple(float(b) for b in biases))})
        assert set(np.unique(grey(annotator(drawing(), "hed")))) == {plain}, biases
        assert set(np.unique(grey(annotator(drawing(), "hed_safe")))) == {safe}, biases


def test_the_network_reads_rgb_0_to_255_minus_its_norm() -> None:
    """Side 1 = relu(red - 100) / 100, the other sides 0: solid red 200 gives sigmoid(1 / 5) * 255 = 140.
    BGR order, or pixels scaled to 0-1, would give sigmoid(0), 127."""
    states = silent_states()
    states["norm"] = torch.tensor([100.0, 0.0, 0.0]).view(1, 3, 1, 1)
    states["block1.convs.0.weight"][0, 0, 1, 1] = 1.0  # channel 0 <- the red input, centre tap
    states["block1.convs.1.weight"][0, 0, 1, 1] = 1.0
    states["block1.projection.weight"][0, 0] = 0.01
    annotator = Annotator(from_states({NAME: states}).network, detect_resolution=64)
    assert set(np.unique(grey(annotator(Image.new("RGB", (64, 64), (200, 0, 0)), "hed")))) == {140}
    assert set(np.unique(grey(annotator(Image.new("RGB", (64, 64), (0, 0, 200)), "hed")))) == {127}


def test_every_processor_on_a_tiny_network_gives_rgb_at_the_input_size_deterministically() -> None:
    annotator = from_states(tiny_states())
    image = drawing()
    outputs = {name: annotator(image, name) for name in PROCESSORS}
    for name, out in outputs.items():
        assert out.size == image.size, name
        assert (grey(out) == grey(annotator(image, name))).all(), f"{name} is deterministic"
    soft = grey(outputs["hed"])
    assert soft.std() > 10 and len(np.unique(soft)) > 20, "tiny weights give a grey map, not a flat one"
    assert (grey(outputs["softedge_hed"]) == soft).all()
    assert (grey(outputs["softedge_hedsafe"]) == grey(outputs["hed_safe"])).all()
    for name in SCRIBBLE:
        assert set(np.unique(grey(outputs[name]))) <= {0, 255}, name
    with pytest.raises(ValueError, match="unknown HED processor 'lineart'"):
        annotator(image, "lineart")


def test_safe_and_scribble_follow_the_soft_map_at_the_detection_size() -> None:
    """At a size that needs no resize (128 px, detect_resolution 128): hed_safe has only the levels 0, 127,
    255, each where the soft map is below a third, between, or above two thirds; scribble_hed is exactly
    scribble_strokes of the soft map."""
    annotator = Annotator(from_states(tiny_states(seed=3)).network, detect_resolution=128)
    image = drawing((128, 128))
    soft, safe = grey(annotator(image, "hed")), grey(annotator(image, "hed_safe"))
    assert set(np.unique(safe)) == {0, 127, 255}
    assert (safe[soft <= 84] == 0).all() and (safe[(soft >= 86) & (soft <= 169)] == 127).all()
    assert (safe[soft >= 171] == 255).all()
    assert (grey(annotator(image, "scribble_hed")) == scribble_strokes(soft)).all()
    assert (grey(annotator(image, "scribble_hedsafe")) == scribble_strokes(safe)).all()
    assert SAFE == {"hed_safe", "softedge_hedsafe", "scribble_hedsafe"}
