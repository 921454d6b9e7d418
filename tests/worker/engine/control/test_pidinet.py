"""PiDiNet soft edges (worker.engine.control.pidinet): the published layout, the pixel difference convolutions,
and every processor on a tiny random network (the shared pre- and post-processing is test_prep's)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch.nn import functional as F  # noqa: N812

from worker.engine.control.pidinet import (
    PROCESSORS,
    WEIGHTS,
    Annotator,
    PiDiNet,
    PixelDifferenceConv,
    from_states,
    pdc_kernel,
    tiny_states,
)

PUBLISHED_TENSORS = 83
PUBLISHED_PARAMETERS = 710_149  # the paper's "PiDiNet, 710K parameters"
PUBLISHED_SHAPES = {
    "init_block.weight": (60, 3, 3, 3),
    "block1_1.conv1.weight": (60, 1, 3, 3),
    "block1_1.conv2.weight": (60, 60, 1, 1),
    "block2_1.shortcut.weight": (120, 60, 1, 1),
    "block2_1.shortcut.bias": (120,),
    "block3_3.conv1.weight": (240, 1, 3, 3),
    "block4_1.conv2.weight": (240, 240, 1, 1),
    "block4_4.conv2.weight": (240, 240, 1, 1),
    "dilations.0.conv1.weight": (24, 60, 1, 1),
    "dilations.3.conv1.weight": (24, 240, 1, 1),
    "dilations.2.conv2_4.weight": (24, 24, 3, 3),
    "attentions.1.conv1.weight": (4, 24, 1, 1),
    "attentions.3.conv2.weight": (1, 4, 3, 3),
    "conv_reduces.0.conv.weight": (1, 24, 1, 1),
    "conv_reduces.3.conv.bias": (1,),
    "classifier.weight": (1, 4, 1, 1),
    "classifier.bias": (1,),
}
NAME = "table5_pidinet.pth"


def drawing(size: tuple[int, int] = (96, 80)) -> Image.Image:
    """Black shapes on white: a filled rectangle, a circle outline and a diagonal line."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 24, 60, 52], fill="black")
    draw.ellipse([4, 4, 30, 30], outline="black", width=3)
    draw.line([(0, size[1] - 1), (size[0] - 1, 40)], fill="black", width=2)
    return image


def published_like(seed: int = 0) -> dict[str, Any]:
    """A full-size checkpoint in the published form: {"state_dict": {"module." + key: tensor}}."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {f"module.{k}": torch.randn(v.shape, generator=generator) for k, v in PiDiNet().state_dict().items()}
    return {"state_dict": tensors}


@pytest.fixture(scope="module")
def annotator() -> Annotator:
    """The tiny network at a detect resolution of 128, so each call is quick."""
    return Annotator(from_states(tiny_states()).network, detect_resolution=128)


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    array = np.asarray(image)
    assert (array == array[..., :1]).all(), "grey: the three channels equal"
    return array[..., 0]


def test_the_full_size_network_has_the_published_checkpoints_layout() -> None:
    state = PiDiNet().state_dict()
    assert len(state) == PUBLISHED_TENSORS
    assert sum(t.numel() for t in state.values()) == PUBLISHED_PARAMETERS
    for key, shape in PUBLISHED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert WEIGHTS == (NAME,)


def test_a_published_form_checkpoint_loads_at_full_width_with_its_tensors() -> None:
    checkpoint = published_like()
    network = from_states({NAME: checkpoint}).network
    assert tuple(network.init_block.weight.shape) == (60, 3, 3, 3)
    assert torch.equal(network.block4_4.conv2.weight, checkpoint["state_dict"]["module.block4_4.conv2.weight"])
    assert not network.training and network.classifier.weight.dtype == torch.float32


def test_tiny_states_have_the_published_structure_with_small_widths() -> None:
    states = tiny_states()
    assert list(states) == [NAME] and list(states[NAME]) == ["state_dict"]
    tiny = states[NAME]["state_dict"]
    assert all(key.startswith("module.") for key in tiny)
    assert {key.removeprefix("module.") for key in tiny} == set(PiDiNet().state_dict())
    assert tuple(tiny["module.init_block.weight"].shape) == (4, 3, 3, 3)
    assert tuple(tiny["module.dilations.3.conv1.weight"].shape) == (4, 16, 1, 1)
    other = tiny_states(1)[NAME]["state_dict"]
    assert not torch.equal(tiny["module.classifier.weight"], other["module.classifier.weight"]), "the seed matters"


def test_the_pixel_difference_kernels_from_hand_made_weights() -> None:
    weight = torch.arange(9.0).view(1, 1, 3, 3)
    assert torch.equal(pdc_kernel("cv", weight), weight)
    assert pdc_kernel("cd", weight).flatten().tolist() == [0, 1, 2, 3, 4 - 36, 5, 6, 7, 8]
    assert pdc_kernel("ad", weight).flatten().tolist() == [-3, 1, 1, -3, 0, 3, -1, -1, 3]
    radial = [[1, 0, 2, 0, 3], [0, -1, -2, -3, 0], [4, -4, 0, -5, 5], [0, -6, -7, -8, 0], [6, 0, 7, 0, 8]]
    assert pdc_kernel("rd", weight)[0, 0].tolist() == radial
    with pytest.raises(ValueError):
        pdc_kernel("xx", weight)


@pytest.mark.parametrize("kind", ["cd", "ad", "rd"])
def test_difference_convolutions_give_zero_on_a_flat_image_and_match_their_kernel(kind: str) -> None:
    conv = PixelDifferenceConv(kind, 3, 5)
    flat = torch.full((1, 3, 12, 12), 0.7)
    assert conv(flat)[..., 2:-2, 2:-2].abs().max() < 1e-5, "differences of equal pixels are zero"
    image = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    padding = 2 if kind == "rd" else 1
    vanilla = F.conv2d(image, pdc_kernel(kind, conv.weight), padding=padding)
    assert conv(image).shape == image.shape[:1] + (5,) + image.shape[2:]
    assert torch.allclose(conv(image), vanilla, atol=1e-5)


def test_every_processor_gives_an_rgb_image_of_the_input_size_deterministically(annotator: Annotator) -> None:
    image = drawing()
    outputs = {processor: pixels(annotator(image, processor)) for processor in PROCESSORS}
    assert all(out.shape == (80, 96) for out in outputs.values())
    for processor in ("pidinet", "scribble_pidsafe"):
        assert np.array_equal(outputs[processor], pixels(annotator(image, processor))), processor
    edges = outputs["pidinet"]
    assert edges.std() > 5 and 0 < edges.mean() < 255, "not a flat map"
    assert np.array_equal(edges, outputs["softedge_pidinet"])
    assert np.array_equal(outputs["pidinet_safe"], outputs["softedge_pidsafe"])
    assert not np.array_equal(outputs["pidinet_safe"], edges)
    assert np.array_equal(outputs["scribble_pidinet"], outputs["pidinet_scribble"])
    with pytest.raises(ValueError, match="pidinet_sketch"):
        annotator(image, "pidinet_sketch")


def test_safe_edges_take_the_three_safe_levels_at_the_networks_size(annotator: Annotator) -> None:
    image = drawing((128, 128))  # already the network's size: no resize blurs the levels
    safe = pixels(annotator(image, "pidinet_safe"))
    assert set(np.unique(safe)) <= {0, 127, 255} and len(np.unique(safe)) >= 2
    soft = pixels(annotator(image, "pidinet"))
    assert len(np.unique(soft)) > 3
    assert ((soft >= 170) == (safe == 255)).all(), "x * 3 floors to 2 from 2/3 of 255 up"


@pytest.mark.parametrize("processor", ["scribble_pidinet", "scribble_pidsafe"])
def test_scribbles_are_binary_at_any_size(annotator: Annotator, processor: str) -> None:
    out = pixels(annotator(drawing((90, 70)), processor))
    assert set(np.unique(out)) <= {0, 255} and out.max() == 255


def test_transparent_pixels_count_as_white_paper(annotator: Annotator) -> None:
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    white = Image.new("RGB", (64, 64), "white")
    black = Image.new("RGB", (64, 64), "black")
    assert np.array_equal(pixels(annotator(clear, "pidinet")), pixels(annotator(white, "pidinet")))
    assert not np.array_equal(pixels(annotator(clear, "pidinet")), pixels(annotator(black, "pidinet")))


def test_from_states_runs_at_the_reference_detect_resolution_of_512() -> None:
    default = from_states(tiny_states())
    assert default.detect_resolution == 512
    assert default(drawing((32, 32)), "pidinet").size == (32, 32)


def test_a_missing_key_is_a_value_error_naming_the_file() -> None:
    checkpoint = tiny_states()[NAME]
    del checkpoint["state_dict"]["module.block2_3.conv1.weight"]
    with pytest.raises(ValueError, match=r"table5_pidinet\.pth.*block2_3\.conv1\.weight"):
        from_states({NAME: checkpoint})


def test_unexpected_keys_wrong_shapes_and_an_absent_file_are_value_errors() -> None:
    extra = tiny_states()[NAME]
    extra["state_dict"]["module.classifier.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"table5_pidinet\.pth.*classifier\.extra"):
        from_states({NAME: extra})
    misshapen = tiny_states()[NAME]
    misshapen["state_dict"]["module.block1_2.conv2.weight"] = torch.zeros(4, 4, 3, 3)
    with pytest.raises(ValueError, match=r"table5_pidinet\.pth"):
        from_states({NAME: misshapen})
    with pytest.raises(ValueError, match=r"table5_pidinet\.pth"):
        from_states({"ControlNetHED.pth": tiny_states()[NAME]})


def test_states_in_double_precision_load_as_float32() -> None:
    checkpoint = tiny_states()[NAME]
    doubled = {"state_dict": {k: v.double() for k, v in checkpoint["state_dict"].items()}}
    network = from_states({NAME: doubled}).network
    assert {p.dtype for p in network.parameters()} == {torch.float32}


class Recorder(torch.nn.Module):
    """Stands in for the network: remembers its input and answers 0.5 everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return torch.full_like(x[:, :1], 0.5)


def test_the_network_sees_bgr_in_0_to_1_at_the_detection_size() -> None:
    recorder = Recorder()
    out = Annotator(recorder, detect_resolution=128)(Image.new("RGB", (40, 30), (255, 0, 0)), "pidinet")  # type: ignore[arg-type]
    (seen,) = recorder.seen
    assert tuple(seen.shape) == (1, 3, 128, 192)
    assert seen[0, 2].min() == 1.0 and seen[0, :2].max() == 0.0, "red arrives in the last channel"
    assert set(np.unique(pixels(out))) == {127}, "0.5 * 255 truncated"
