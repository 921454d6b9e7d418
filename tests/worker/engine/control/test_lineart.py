"""The line-art annotators (worker.engine.control.lineart): the published layouts, and tiny random networks on a
small drawing, asserted on pixels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from worker.engine.control.lineart import (
    PROCESSORS,
    WEIGHTS,
    Annotator,
    SketchGenerator,
    UnetBlock,
    UnetGenerator,
    control_from_drawing,
    from_states,
    tiny_states,
)

INNERMOST = "model.model.1" + ".model.3" * 6
"""netG.pth's innermost level: the outermost's inner level (model.model.1), then six levels down (model.3)."""

SKETCH_LAYOUT = {
    "model0.1.weight": (64, 3, 7, 7),
    "model1.0.weight": (128, 64, 3, 3),
    "model1.3.weight": (256, 128, 3, 3),
    "model2.2.conv_block.5.weight": (256, 256, 3, 3),
    "model3.0.weight": (256, 128, 3, 3),
    "model3.3.bias": (64,),
    "model4.1.weight": (1, 64, 7, 7),
    "model4.1.bias": (1,),
}
"""sk_model.pth and sk_model2.pth: 24 tensors, 4,290,945 numbers (the 17 MB files), among them these."""

UNET_LAYOUT = {
    "model.model.0.weight": (64, 3, 4, 4),
    "model.model.3.weight": (128, 1, 4, 4),
    "model.model.3.bias": (1,),
    "model.model.1.model.1.weight": (128, 64, 4, 4),
    "model.model.1.model.5.weight": (256, 64, 4, 4),
    "model.model.1.model.3.model.3.model.1.weight": (512, 256, 4, 4),
    f"{INNERMOST}.model.1.weight": (512, 512, 4, 4),
    f"{INNERMOST}.model.3.weight": (512, 512, 4, 4),
    f"{INNERMOST}.model.3.bias": (512,),
}
"""netG.pth: 32 tensors, 54,405,505 numbers (the 218 MB file), among them these."""


def layout(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def drawing(size: tuple[int, int] = (96, 80)) -> Image.Image:
    """Black strokes on white paper: a long line across the middle and a circle at the top left."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.line([(8, size[1] // 2), (size[0] - 8, size[1] // 2)], fill="black", width=3)
    draw.ellipse([8, 6, 30, 28], outline="black", width=3)
    return image


@pytest.fixture(scope="module")
def tiny() -> Annotator:
    """The tiny networks, run at a shorter side of 128 rather than 512 to keep the tests fast."""
    return replace(from_states(tiny_states()), resolution=128)


class ChannelMean(nn.Module):
    """Stands in for a network: draws the input itself (the mean of its channels), so the output is predictable."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


def test_the_full_size_networks_have_the_published_layouts() -> None:
    with torch.device("meta"):
        sketch, unet = layout(SketchGenerator()), layout(UnetGenerator())
    assert (len(sketch), sum(int(np.prod(s)) for s in sketch.values())) == (24, 4_290_945)
    assert {key: sketch[key] for key in SKETCH_LAYOUT} == SKETCH_LAYOUT
    assert (len(unet), sum(int(np.prod(s)) for s in unet.values())) == (32, 54_405_505)
    assert {key: unet[key] for key in UNET_LAYOUT} == UNET_LAYOUT


def test_tiny_states_keep_the_published_key_names_and_only_narrow() -> None:
    states = tiny_states()
    assert list(states) == list(WEIGHTS)
    with torch.device("meta"):
        published = {"sk_model.pth": layout(SketchGenerator()), "netG.pth": layout(UnetGenerator())}
    published["sk_model2.pth"] = published["sk_model.pth"]
    for name, tensors in states.items():
        assert list(tensors) == list(published[name]), name
        assert sum(v.numel() for v in tensors.values()) < 100_000, name
    assert not torch.equal(states["sk_model.pth"]["model0.1.weight"], states["sk_model2.pth"]["model0.1.weight"])
    assert all(
        torch.equal(a, b) for a, b in zip(tiny_states()["netG.pth"].values(), states["netG.pth"].values(), strict=True)
    )


def test_from_states_reads_the_widths_from_the_shapes(tiny: Annotator) -> None:
    sketch, unet = tiny.networks["sk_model.pth"], tiny.networks["netG.pth"]
    assert isinstance(sketch, SketchGenerator) and isinstance(unet, UnetGenerator)
    assert layout(sketch)["model0.1.weight"] == (4, 3, 7, 7) and len(sketch.model2) == 3
    assert layout(unet)[f"{INNERMOST}.model.1.weight"] == (16, 16, 4, 4)
    assert all(p.dtype == torch.float32 for p in unet.parameters()) and not unet.training


@pytest.mark.parametrize("processor", list(PROCESSORS))
def test_each_processor_makes_a_deterministic_rgb_image_of_the_input_size(tiny: Annotator, processor: str) -> None:
    out = tiny(drawing(), processor)
    assert out.mode == "RGB" and out.size == (96, 80)
    pixels = np.asarray(out)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    assert pixels.std() > 1, "random weights still draw something, not a flat image"
    assert np.array_equal(pixels, np.asarray(tiny(drawing(), processor)))


def test_realistic_is_lineart_and_coarse_runs_its_own_weights(tiny: Annotator) -> None:
    lineart = np.asarray(tiny(drawing(), "lineart"))
    assert np.array_equal(lineart, np.asarray(tiny(drawing(), "lineart_realistic")))
    assert not np.array_equal(lineart, np.asarray(tiny(drawing(), "lineart_coarse")))


@pytest.mark.parametrize("processor", list(PROCESSORS))
def test_dark_lines_on_paper_become_white_lines_on_black(processor: str) -> None:
    stand_in = ChannelMean()
    annotator = Annotator(networks=dict.fromkeys(WEIGHTS, stand_in))
    out = np.asarray(annotator(drawing(), processor))[..., 0]
    assert out[40, 12:84].min() >= 200, "the line is white along its length"
    assert out[60:80, 40:90].max() <= 3, "the paper is black"
    grey = np.asarray(annotator(Image.new("RGB", (64, 48), (100, 100, 100)), processor))
    assert np.abs(grey.astype(int) - 155).max() <= 1, "grey 100 drawn as 100 is 155 after inversion"


class Recorder(nn.Module):
    """Stands in for a network: keeps the range of what it was fed and draws zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.fed: list[tuple[float, float, tuple[int, ...]]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fed.append((x.min().item(), x.max().item(), tuple(x.shape)))
        return torch.zeros_like(x[:, :1])


def test_the_sketch_sees_0_to_1_and_the_unet_minus_1_to_1_at_multiples_of_256() -> None:
    half = Image.new("RGB", (96, 80), "white")
    half.paste((0, 0, 0), (0, 0, 48, 80))
    sketch, unet = Recorder(), Recorder()
    annotator = Annotator(networks={"sk_model.pth": sketch, "sk_model2.pth": sketch, "netG.pth": unet})
    assert (np.asarray(annotator(half, "lineart")) == 255).all(), "a drawing of zeros is all line: 255"
    assert (np.asarray(annotator(half, "lineart_anime")) == 128).all(), "tanh 0 is grey 127.5, kept as 127"
    assert sketch.fed == [(0.0, 1.0, (1, 3, 512, 640))]
    assert unet.fed[0][2] == (1, 3, 512, 768) and unet.fed[0][0] == pytest.approx(-1, abs=0.02)
    assert unet.fed[0][1] == pytest.approx(1, abs=0.02)


def test_transparent_parts_are_white_paper() -> None:
    annotator = Annotator(networks=dict.fromkeys(WEIGHTS, ChannelMean()))
    assert np.asarray(annotator(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "lineart")).max() == 0


def test_control_from_drawing_inverts_and_resizes() -> None:
    drawn = np.array([[255, 0], [255, 255]], dtype=np.uint8)
    out = control_from_drawing(drawn, (2, 2))
    assert out.mode == "RGB" and np.asarray(out)[..., 0].tolist() == [[0, 255], [0, 0]]
    assert control_from_drawing(np.full((64, 64), 200, np.uint8), (10, 6)).size == (10, 6)


def test_the_unet_skip_carries_the_leaky_relu_as_the_published_network_did() -> None:
    block = UnetBlock(outer=2, inner=4)
    x = torch.tensor([-1.0, 2.0]).reshape(1, 2, 1, 1).repeat(1, 1, 4, 4)
    out = block(x)
    assert out.shape == (1, 4, 4, 4)
    assert torch.equal(out[:, :2], torch.nn.functional.leaky_relu(x, 0.2)), "the input half is leaky-ReLU'd"


def test_a_module_prefix_is_dropped_and_the_result_is_the_same(tiny: Annotator) -> None:
    states = tiny_states()
    states["netG.pth"] = {f"module.{key}": value for key, value in states["netG.pth"].items()}
    prefixed = replace(from_states(states), resolution=128)
    assert np.array_equal(
        np.asarray(prefixed(drawing(), "lineart_anime")), np.asarray(tiny(drawing(), "lineart_anime"))
    )


def test_states_that_do_not_fit_are_refused_naming_the_file() -> None:
    states = tiny_states()
    del states["sk_model2.pth"]["model2.1.conv_block.5.bias"]
    with pytest.raises(ValueError, match=r"sk_model2\.pth.*missing keys \['model2\.1\.conv_block\.5\.bias'\]"):
        from_states(states)
    states = tiny_states()
    states["netG.pth"]["model.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"netG\.pth.*unexpected keys \['model\.extra\.weight'\]"):
        from_states(states)
    states = tiny_states()
    states["sk_model.pth"]["model4.1.bias"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"sk_model\.pth: the weights do not fit"):
        from_states(states)
    states = tiny_states()
    del states["netG.pth"]
    with pytest.raises(ValueError, match=r"missing \['netG\.pth'\]"):
        from_states(states)


def test_an_unknown_processor_is_refused(tiny: Annotator) -> None:
    with pytest.raises(ValueError, match="'lineart_manga'"):
        tiny(drawing(), "lineart_manga")


def test_a_unet_of_another_depth_is_refused_by_its_keys() -> None:
    states = tiny_states()
    with torch.device("meta"):
        shallow = UnetGenerator(width=2, depth=7)
    states["netG.pth"] = {key: torch.zeros(value.shape) for key, value in shallow.state_dict().items()}
    with pytest.raises(ValueError, match=r"netG\.pth: the weights do not fit the network: missing keys"):
        from_states(states)
