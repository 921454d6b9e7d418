"""PiDiNet soft edges (Su et al., "Pixel Difference Networks for Efficient Edge Detection", 2021), the
annotator ControlNet's SoftEdge and Scribble models were trained with.

Weights: `table5_pidinet.pth` in lllyasviel/Annotators, a dict whose "state_dict" entry holds the trained
tensors under a "module." prefix (saved from DataParallel). The network is the published "carv4" model,
as controlnet_aux's `pidi.pidinet()` and ControlNet-v1-1's annotator/pidinet build it: base width 60
(stages of 60, 120, 240, 240 channels), every stage's four blocks use the pixel difference convolutions
cd, ad, rd, cv in that order, with compact dilation modules of 24 channels (CDCM) and compact spatial
attention (CSAM) on each side output, NOT converted to vanilla convolutions (the 3x3 difference weights are
stored; the equivalent vanilla kernel is built on every call, as the reference does).

Pixel difference convolutions (`pdc_kernel` gives each one's vanilla kernel):
- cv: a plain 3x3 convolution.
- cd (central): sum of w_i * (x_i - x_centre) over the 3x3 window.
- ad (angular): sum of w_i * (x_i - x_next) over the 3x3 ring, x_next the pixel clockwise after x_i
  (the centre's term is zero).
- rd (radial): a 5x5 window; sum of w_i * (x_outer - x_inner) over its 8 rays, x_outer the corner or edge
  middle of the 5x5 ring and x_inner the 3x3 ring pixel on the same ray; w_1..w_8 used, w_0 not; padding 2.

Processors (every output RGB, grey repeated in the three channels, at the input's size):
- pidinet, softedge_pidinet: the fused edge probability (the network's last, sigmoid output) times 255,
  truncated to 8 bits: soft white edges on black.
- pidinet_safe, softedge_pidsafe: the same edges quantised by the reference's `safe_step` (levels 0, 127
  and 255 at the network's resolution) before the resize back.
- scribble_pidinet (alias pidinet_scribble), scribble_pidsafe: the edges (safe-quantised for pidsafe) made
  into strokes as the reference does: `prep.nms` (blur sigma 3, directional maxima above 127), a blur of sigma
  3, then every pixel above 4 becomes 255 and the rest 0; binary white strokes on black.

The input (alpha composited over white, as the reference's HWC3 does) is resized so its shorter side is
`detect_resolution` (512) and both sides are rounded to multiples of 64 (prep.detect_size; Lanczos where the
height grows, area averaging otherwise), fed to the network as BGR in 0-1 (the reference's channel order),
and the map is resized back to the input's size (bilinear; for scribbles then thresholded at 127 so they
stay binary).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F  # noqa: N812

from worker.engine.control.lines import to_rgb
from worker.engine.control.prep import DETECT_RESOLUTION, detect_size, rgb_on_white, safe_step, scribble_strokes

WEIGHTS: tuple[str, ...] = ("table5_pidinet.pth",)
"""The published file, in the Hugging Face repo lllyasviel/Annotators."""

PROCESSORS: dict[str, str] = {
    "pidinet": "PiDiNet soft edges: edge probability as grey, white edges on black",
    "softedge_pidinet": "PiDiNet soft edges (same as pidinet): white edges on black",
    "pidinet_safe": "PiDiNet soft edges quantised to levels 0, 127, 255 (safe_step): white edges on black",
    "softedge_pidsafe": "PiDiNet safe edges (same as pidinet_safe): white edges on black",
    "scribble_pidinet": "PiDiNet edges thinned, blurred and thresholded: binary white strokes on black",
    "pidinet_scribble": "alias of scribble_pidinet: binary white strokes on black",
    "scribble_pidsafe": "PiDiNet safe edges thinned, blurred and thresholded: binary white strokes on black",
}

SAFE = frozenset({"pidinet_safe", "softedge_pidsafe", "scribble_pidsafe"})
SCRIBBLE = frozenset({"scribble_pidinet", "pidinet_scribble", "scribble_pidsafe"})
CARV4: tuple[str, ...] = ("cd", "ad", "rd", "cv") * 4
"""The pixel difference convolution of layers 0-15 (the initial block, then the 15 blocks in order)."""
PUBLISHED_WIDTHS = (60, 24)
"""(base width, CDCM width) of the published network."""
TINY_WIDTHS = (4, 4)

_AD_PAIRED = (3, 0, 1, 6, 4, 2, 7, 8, 5)
"""ad: for each of the 9 positions (row-major 3x3), the position whose weight it is differenced with."""
_RD_OUTER = (0, 2, 4, 10, 14, 20, 22, 24)
_RD_INNER = (6, 7, 8, 11, 13, 16, 17, 18)
"""rd: the 5x5 positions (row-major) of weights 1-8 and of their negatives on the same rays."""


def pdc_kernel(kind: str, weight: torch.Tensor) -> torch.Tensor:
    """The vanilla kernel of pixel difference convolution `kind` with 3x3 weights (out, in, 3, 3): 3x3 for cv,
    cd and ad, 5x5 for rd."""
    if kind == "cv":
        return weight
    if kind == "cd":
        centre = torch.zeros_like(weight)
        centre[:, :, 1, 1] = weight.sum(dim=(2, 3))
        return weight - centre
    flat = weight.flatten(2)
    if kind == "ad":
        return (flat - flat[:, :, list(_AD_PAIRED)]).view_as(weight)
    if kind == "rd":
        radial = flat.new_zeros(*flat.shape[:2], 25)
        radial[:, :, list(_RD_OUTER)] = flat[:, :, 1:]
        radial[:, :, list(_RD_INNER)] = -flat[:, :, 1:]
        return radial.view(*flat.shape[:2], 5, 5)
    raise ValueError(f"unknown pixel difference convolution {kind!r}")


class PixelDifferenceConv(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """A 3x3 pixel difference convolution (no bias, stride 1), stored as its 3x3 weights like the reference."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, groups: int = 1) -> None:
        super().__init__()
        self.kind, self.groups = kind, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "cd":  # as the reference computes it: the plain conv minus the centre times the sum
            centre = F.conv2d(x, self.weight.sum(dim=(2, 3), keepdim=True), groups=self.groups)
            return F.conv2d(x, self.weight, padding=1, groups=self.groups) - centre
        padding = 2 if self.kind == "rd" else 1
        return F.conv2d(x, pdc_kernel(self.kind, self.weight), padding=padding, groups=self.groups)


class Block(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """Depthwise pixel difference conv, ReLU, pointwise conv, plus the input; with stride 2 the input is max
    pooled first and the residual goes through a 1x1 `shortcut`."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        if stride > 1:
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv1 = PixelDifferenceConv(kind, in_channels, in_channels, groups=in_channels)
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = self.pool(x)
        y = self.conv2(F.relu(self.conv1(x)))
        return y + (self.shortcut(x) if self.stride > 1 else x)


class CDCM(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """Compact dilation convolution module: ReLU, 1x1 conv, then the sum of 3x3 convs dilated 5, 7, 9, 11."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv2_1, self.conv2_2, self.conv2_3, self.conv2_4 = (
            nn.Conv2d(out_channels, out_channels, 3, dilation=d, padding=d, bias=False) for d in (5, 7, 9, 11)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(x))
        return self.conv2_1(x) + self.conv2_2(x) + self.conv2_3(x) + self.conv2_4(x)


class CSAM(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """Compact spatial attention: x times sigmoid(3x3 conv(1x1 conv to 4 channels(ReLU(x))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, kernel_size=1)
        self.conv2 = nn.Conv2d(4, 1, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class MapReduce(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """A 1x1 conv to one channel: a side output's edge logits."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PiDiNet(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """PiDiNet carv4 with CDCM and CSAM, the published parameter names; forward gives the fused edge
    probability (the reference's last output), N x 1 x H x W in 0-1, for BGR input in 0-1."""

    def __init__(self, width: int = PUBLISHED_WIDTHS[0], dilation_width: int = PUBLISHED_WIDTHS[1]) -> None:
        super().__init__()
        self.init_block = PixelDifferenceConv(CARV4[0], 3, width)
        widths = (width, 2 * width, 4 * width, 4 * width)
        self.stages: list[list[str]] = []
        layer, channels = 1, width
        for stage, (out_channels, count) in enumerate(zip(widths, (3, 4, 4, 4), strict=True), start=1):
            names = [f"block{stage}_{index}" for index in range(1, count + 1)]
            for index, name in enumerate(names):
                stride = 2 if stage > 1 and index == 0 else 1
                self.add_module(name, Block(CARV4[layer], channels, out_channels, stride))
                layer, channels = layer + 1, out_channels
            self.stages.append(names)
        self.conv_reduces = nn.ModuleList(MapReduce(dilation_width) for _ in widths)
        self.attentions = nn.ModuleList(CSAM(dilation_width) for _ in widths)
        self.dilations = nn.ModuleList(CDCM(channels, dilation_width) for channels in widths)
        self.classifier = nn.Conv2d(4, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = self.init_block(x)
        sides = []
        for index, names in enumerate(self.stages):
            for name in names:
                x = self.get_submodule(name)(x)
            side = self.conv_reduces[index](self.attentions[index](self.dilations[index](x)))
            sides.append(F.interpolate(side, size, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.classifier(torch.cat(sides, dim=1)))


class Annotator:
    """PiDiNet on a device; called with an image and a processor name (see the module docstring)."""

    def __init__(self, network: PiDiNet, detect_resolution: int = DETECT_RESOLUTION) -> None:
        self.network = network
        self.detect_resolution = detect_resolution

    def edges(self, rgb: np.ndarray) -> np.ndarray:
        """The fused edge probability (float32, 0-1) of a uint8 RGB array, at the array's size."""
        device = next(self.network.parameters()).device
        bgr = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1])).to(device, torch.float32) / 255.0
        with torch.inference_mode():
            fused = self.network(bgr.permute(2, 0, 1)[None])
        edges: np.ndarray = fused[0, 0].float().cpu().numpy()
        return edges

    def __call__(self, image: Image.Image, processor: str) -> Image.Image:
        if processor not in PROCESSORS:
            raise ValueError(f"unknown PiDiNet processor {processor!r}; known: {', '.join(PROCESSORS)}")
        rgb = rgb_on_white(image)
        width, height = detect_size(rgb.shape[1], rgb.shape[0], self.detect_resolution)
        # Lanczos where the height grows. The reference (and prep.resize_for_detection) asks whether the
        # shorter side grows: for a portrait image whose short side is near detect_resolution the two differ.
        resample = cv2.INTER_LANCZOS4 if height > rgb.shape[0] else cv2.INTER_AREA
        edges = self.edges(cv2.resize(rgb, (width, height), interpolation=resample))
        if processor in SAFE:
            edges = safe_step(edges)
        pixels = (edges * 255.0).clip(0, 255).astype(np.uint8)
        if processor in SCRIBBLE:
            pixels = scribble_strokes(pixels)
        pixels = cv2.resize(pixels, image.size, interpolation=cv2.INTER_LINEAR)
        if processor in SCRIBBLE:
            pixels = np.where(pixels > 127, 255, 0)
        return to_rgb(pixels)


def network_state(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a published checkpoint: its "state_dict" entry (or the mapping itself), "module." removed."""
    tensors = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint
    return {key.removeprefix("module."): value for key, value in tensors.items()}


def from_states(states: Mapping[str, Mapping[str, Any]], device: str | torch.device = "cpu") -> Annotator:
    """The annotator from `table5_pidinet.pth` as torch.load returns it; widths come from the tensors' shapes.
    Raises ValueError naming the file when it is absent, or keys are missing, unexpected or misshapen."""
    name = WEIGHTS[0]
    if name not in states:
        raise ValueError(f"PiDiNet needs {name}; got {sorted(states)}")
    state = network_state(states[name])
    try:
        widths = (state["init_block.weight"].shape[0], state["dilations.0.conv1.weight"].shape[0])
    except KeyError as missing:
        raise ValueError(f"{name}: missing key {missing} (needed for the network's widths)") from None
    network = PiDiNet(*widths)
    expected = set(network.state_dict())
    missing_keys, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing_keys or unexpected:
        raise ValueError(f"{name}: missing keys {missing_keys[:5]}, unexpected keys {unexpected[:5]}")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{name}: {error}") from None
    return Annotator(network.to(device=device, dtype=torch.float32).eval())


def tiny_states(seed: int = 0) -> dict[str, dict[str, Any]]:
    """A published-layout checkpoint ({"state_dict": {"module." + key: tensor}}) of a base width 4, CDCM
    width 4 network with random weights: each weight normal with std 1.5 / sqrt(fan-in), biases std 0.1."""
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for key, like in PiDiNet(*TINY_WIDTHS).state_dict().items():
        noise = torch.randn(like.shape, generator=generator)
        scale = 0.1 if like.dim() == 1 else 1.5 / max(1, like[0].numel()) ** 0.5
        tensors[f"module.{key}"] = noise * scale
    return {WEIGHTS[0]: {"state_dict": tensors}}
