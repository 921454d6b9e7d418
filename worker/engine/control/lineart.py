"""Line art from ControlNet 1.1's annotator networks (the files of the Hugging Face repo lllyasviel/Annotators).

- `sk_model.pth` (`lineart`, `lineart_realistic`) and `sk_model2.pth` (`lineart_coarse`): one image-to-sketch
  generator, two sets of weights. A 7x7 convolution, two stride-2 convolutions, three residual blocks, two
  stride-2 transposed convolutions, a 7x7 convolution and a sigmoid; instance norm without learned scale,
  reflection padding. Input RGB in [0, 1]; output one channel, 1 = paper, 0 = line.
- `netG.pth` (`lineart_anime`): a pix2pix U-Net with 8 down-samplings (64 to 512 channels), instance norm
  without learned scale. Input RGB in [-1, 1]; output one channel through tanh, 1 = paper. Its sides must be
  multiples of 2**8 = 256.

Every processor, as the reference annotators do: the image (transparent parts composited on white) is resized
so its shorter side is 512 and both sides are multiples of 64 (Lanczos when enlarging, area when shrinking);
the U-Net's input is resized on to the next multiples of 256 (bicubic) and its output back (bicubic). The
networks draw dark lines on white paper; the control image is 255 minus that drawing, resized to the input's
size (bilinear): white lines on black, in grey levels, RGB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from worker.engine.control.prep import DETECT_RESOLUTION, resize_for_detection, rgb_on_white

__all__ = ["PROCESSORS", "WEIGHTS", "Annotator", "SketchGenerator", "UnetGenerator", "from_states", "tiny_states"]


WEIGHTS: tuple[str, ...] = ("sk_model.pth", "sk_model2.pth", "netG.pth")
"""File names, in the Hugging Face repo lllyasviel/Annotators, that this module loads."""

PROCESSORS: dict[str, str] = {
    "lineart": "the line-art network (sk_model.pth): white lines on black, grey levels",
    "lineart_realistic": "the same as lineart (sk_model.pth): white lines on black, grey levels",
    "lineart_coarse": "the coarse line-art network (sk_model2.pth): bolder white lines on black, fewer details",
    "lineart_anime": "the anime line-art U-Net (netG.pth): white lines on black, grey levels",
}
"""cn_processor name -> the convention of its control image."""

NETWORK_OF: dict[str, str] = {
    "lineart": "sk_model.pth",
    "lineart_realistic": "sk_model.pth",
    "lineart_coarse": "sk_model2.pth",
    "lineart_anime": "netG.pth",
}
"""The file whose network each processor runs."""

UNET_DEPTH = 8
"""netG.pth's levels: its input's sides are multiples of 2**8 (resized up to the next ones)."""
TINY_WIDTHS = {"sk_model.pth": 4, "sk_model2.pth": 4, "netG.pth": 2}
"""tiny_states: the first layer's width (published: 64); the depth and the residual blocks stay as published."""


def instance_norm(channels: int) -> nn.Module:
    """Instance norm without learned scale or running statistics: it has no tensors in the state dicts."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """x + (reflection pad, 3x3 conv, norm, ReLU, reflection pad, 3x3 conv, norm)(x); keys conv_block.{1,5}."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            *(nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), instance_norm(width), nn.ReLU()),
            *(nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), instance_norm(width)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class SketchGenerator(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """sk_model.pth / sk_model2.pth: model0 (7x7 conv to `width`), model1 (two stride-2 3x3 convs, doubling the
    width each), model2 (`blocks` residual blocks at 4 x width), model3 (two stride-2 transposed convs back to
    `width`), model4 (7x7 conv, sigmoid). Published: width 64, 3 blocks. Sides must be multiples of 4."""

    def __init__(self, width: int = 64, blocks: int = 3, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        wide, widest = width * 2, width * 4
        self.model0 = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), instance_norm(width), nn.ReLU()
        )
        self.model1 = nn.Sequential(
            *(nn.Conv2d(width, wide, 3, stride=2, padding=1), instance_norm(wide), nn.ReLU()),
            *(nn.Conv2d(wide, widest, 3, stride=2, padding=1), instance_norm(widest), nn.ReLU()),
        )
        self.model2 = nn.Sequential(*(ResidualBlock(widest) for _ in range(blocks)))
        self.model3 = nn.Sequential(
            *(nn.ConvTranspose2d(widest, wide, 3, stride=2, padding=1, output_padding=1), instance_norm(wide)),
            nn.ReLU(),
            *(nn.ConvTranspose2d(wide, width, 3, stride=2, padding=1, output_padding=1), instance_norm(width)),
            nn.ReLU(),
        )
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))


class UnetBlock(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """One level of the U-Net: a stride-2 4x4 conv from `outer` to `inner` channels, the inner levels, a stride-2
    4x4 transposed conv back to `outer`. The layer order fixes the published keys (model.<index>):
    outermost [conv, inner, ReLU, convT, tanh]; middle [LeakyReLU, conv, norm, inner, ReLU, convT, norm];
    innermost [LeakyReLU, conv, ReLU, convT, norm]. Below the outermost, the output is the input beside the
    result (channels concatenated), and the input there has been through the LeakyReLU: in the published
    network that activation ran in place, so the skip connection carries it, and the weights expect it."""

    def __init__(
        self, outer: int, inner: int, submodule: nn.Module | None = None, in_channels: int | None = None
    ) -> None:
        """`in_channels` (the image's) is given for the outermost level only; the innermost has no `submodule`."""
        super().__init__()
        self.outermost = in_channels is not None
        down = nn.Conv2d(outer if in_channels is None else in_channels, inner, 4, stride=2, padding=1)
        up = nn.ConvTranspose2d(inner if submodule is None else inner * 2, outer, 4, stride=2, padding=1)
        if self.outermost:
            if submodule is None:
                raise ValueError("the outermost level of a U-Net wraps the others: give it a submodule")
            layers = [down, submodule, nn.ReLU(), up, nn.Tanh()]
        elif submodule is None:
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), up, instance_norm(outer)]
        else:
            layers = [nn.LeakyReLU(0.2), down, instance_norm(inner), submodule, nn.ReLU(), up, instance_norm(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        x = self.model[0](x)
        return torch.cat([x, self.model[1:](x)], 1)


class UnetGenerator(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """netG.pth: `depth` nested UnetBlocks, widths width, 2, 4 and 8 x width, then 8 x width to the innermost.
    Published: width 64, depth 8 (a smaller depth would rename the innermost keys). Sides: multiples of 2**depth."""

    def __init__(self, width: int = 64, depth: int = 8, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        block = UnetBlock(width * 8, width * 8)
        for _ in range(depth - 5):
            block = UnetBlock(width * 8, width * 8, block)
        for outer in (width * 4, width * 2, width):
            block = UnetBlock(outer, outer * 2, block)
        self.model = UnetBlock(out_channels, width, block, in_channels=in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def to_batch(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (1, 3, H, W) in 0-255 on `device`."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(device, torch.float32).permute(2, 0, 1)[None]


def draw_sketch(net: nn.Module, pixels: np.ndarray) -> np.ndarray:
    """The sketch generator's drawing of uint8 RGB `pixels`: uint8 (H, W), 255 = paper, 0 = line."""
    lines = net(to_batch(pixels, device_of(net)) / 255.0)[0, 0]
    drawing: np.ndarray = (lines * 255.0).clamp(0, 255).cpu().numpy().astype(np.uint8)
    return drawing


def draw_anime(net: nn.Module, pixels: np.ndarray, multiple: int = 2**UNET_DEPTH) -> np.ndarray:
    """The U-Net's drawing of uint8 RGB `pixels`, run at the next multiples of `multiple` (bicubic there and
    back): uint8 (H, W), 255 = paper, 0 = line."""
    height, width = pixels.shape[:2]
    padded = (multiple * math.ceil(width / multiple), multiple * math.ceil(height / multiple))
    feed = cv2.resize(pixels, padded, interpolation=cv2.INTER_CUBIC)
    lines = net(to_batch(feed, device_of(net)) / 127.5 - 1.0)[0, 0] * 127.5 + 127.5
    drawing: np.ndarray = cv2.resize(lines.cpu().numpy(), (width, height), interpolation=cv2.INTER_CUBIC)
    return drawing.clip(0, 255).astype(np.uint8)


def control_from_drawing(drawing: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A drawing (uint8 (H, W), dark lines on white) as the control image: resized to `size` (width, height),
    bilinear, then 255 minus it: white lines on black, RGB."""
    lines = 255 - cv2.resize(drawing, size, interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(np.stack([lines] * 3, axis=-1))


def device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@dataclass(frozen=True)
class Annotator:
    """The three line-art networks, keyed by file name (WEIGHTS), each in eval mode on one device.

    Called with an image and a processor (a key of PROCESSORS) it returns the control image: RGB at the image's
    size, white lines on black. Not thread-safe.
    """

    networks: Mapping[str, nn.Module]
    resolution: int = DETECT_RESOLUTION

    def __call__(self, image: Image.Image, processor: str) -> Image.Image:
        if processor not in PROCESSORS:
            raise ValueError(f"unknown line-art processor {processor!r}: one of {', '.join(PROCESSORS)}")
        name = NETWORK_OF[processor]
        pixels = resize_for_detection(rgb_on_white(image), self.resolution)
        draw = draw_anime if name == "netG.pth" else draw_sketch
        with torch.inference_mode():
            drawing = draw(self.networks[name], pixels)
        return control_from_drawing(drawing, image.size)


def without_prefix(states: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """The keys with a leading `prefix` removed (netG.pth was saved from a DataParallel wrapper in some copies)."""
    return {key.removeprefix(prefix): value for key, value in states.items()}


def shape_of(states: Mapping[str, torch.Tensor], key: str, name: str) -> tuple[int, ...]:
    if key not in states:
        raise ValueError(f"{name}: not a line-art checkpoint: it has no {key!r} (keys: {sorted(states)[:3]}...)")
    return tuple(states[key].shape)


def build_network(name: str, states: Mapping[str, torch.Tensor]) -> nn.Module:
    """The network of file `name`, its widths (and the sketch generator's block count) read from `states`, built
    on the meta device: load_strictly gives it its tensors. The U-Net keeps its 8 levels: another depth would
    rename its innermost keys, and the strict load says so."""
    with torch.device("meta"):
        if name == "netG.pth":
            width, inputs = shape_of(states, "model.model.0.weight", name)[:2]
            outputs = shape_of(states, "model.model.3.weight", name)[1]
            return UnetGenerator(width=width, depth=UNET_DEPTH, in_channels=inputs, out_channels=outputs)
        width, inputs = shape_of(states, "model0.1.weight", name)[:2]
        outputs = shape_of(states, "model4.1.weight", name)[0]
        blocks = len({key.split(".")[1] for key in states if key.startswith("model2.")})
        return SketchGenerator(width=width, blocks=blocks, in_channels=inputs, out_channels=outputs)


def load_strictly(net: nn.Module, states: Mapping[str, torch.Tensor], name: str) -> None:
    """Give `net` the tensors of `states`; any missing or unexpected key, or a shape that does not fit, is a
    ValueError naming the file and a few of the keys."""
    try:
        result = net.load_state_dict(dict(states), strict=False, assign=True)
    except RuntimeError as exc:
        raise ValueError(f"{name}: the weights do not fit the network: {str(exc)[:300]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{name}: the weights do not fit the network: missing keys {result.missing_keys[:3]}, "
            f"unexpected keys {result.unexpected_keys[:3]}"
        )


def from_states(states: Mapping[str, Mapping[str, torch.Tensor]], device: str | torch.device = "cpu") -> Annotator:
    """The Annotator of state dicts keyed by file name (each of WEIGHTS, as torch.load(weights_only=True) returns
    the published file), loaded strictly, float32, in eval mode on `device`."""
    missing, unknown = [n for n in WEIGHTS if n not in states], [n for n in states if n not in WEIGHTS]
    if missing or unknown:
        raise ValueError(f"line-art weights: expected the files {list(WEIGHTS)}; missing {missing}, unknown {unknown}")
    networks: dict[str, nn.Module] = {}
    for name in WEIGHTS:
        tensors = without_prefix(states[name])
        net = build_network(name, tensors)
        load_strictly(net, tensors, name)
        networks[name] = net.to(device=device, dtype=torch.float32).eval()
    return Annotator(networks=networks)


def tiny_states(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Random-weight state dicts with the published files' key names and shapes, except the widths
    (TINY_WIDTHS): default torch initialisation, seeded; the global random state is left as it was."""
    states: dict[str, dict[str, torch.Tensor]] = {}
    for offset, name in enumerate(WEIGHTS):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * len(WEIGHTS) + offset)
            width = TINY_WIDTHS[name]
            net = UnetGenerator(width=width) if name == "netG.pth" else SketchGenerator(width=width)
        states[name] = {key: value.detach().clone() for key, value in net.state_dict().items()}
    return states
