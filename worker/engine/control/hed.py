"""HED soft edges: ControlNet's annotator network "ControlNetHED_Apache2", weights `ControlNetHED.pth` in the
Hugging Face repo lllyasviel/Annotators.

The network is a VGG-like stack of five blocks. Block n max-pools its input by 2 (all but block 1), runs a
few 3x3 convolutions each followed by ReLU, and projects the result to one channel with a 1x1 convolution:
its side output, a logit map at 1/2^(n-1) of the input's size. Published widths 64, 128, 256, 512, 512 and
depths (3x3 convolutions per block) 2, 2, 3, 3, 3; `from_states` reads both from the tensors, so a network
with smaller widths (`tiny_states`) loads the same way. The state dict's keys, as published: `norm`
(1, 3, 1, 1); `block{n}.convs.{i}.weight` and `.bias`; `block{n}.projection.weight` and `.bias`.

Conventions, those of the reference annotator (controlnet_aux's HEDdetector, the model ControlNet 1.1 uses):
- Input: the image (transparent parts composited over white) as RGB, not BGR, pixel values 0-255 as
  floats, not scaled to 0-1. The network's only normalisation is its own: it subtracts the learned
  per-channel `norm` parameter.
- The image is resized so that its shorter side is `detect_resolution` (512) and both sides are multiples
  of 64 (Lanczos when enlarging, area averaging when shrinking). The map is resized back to the image's
  size bilinearly.
- Edge map: the sigmoid of the mean of the five side outputs, each upsampled bilinearly to the detection
  size, times 255 and truncated to 8 bits. White = edge, black = none, soft grey between.
- safe: each probability p becomes floor(3p) / 2 before the 8-bit step (the reference's safe_step, 2
  steps), so at the detection size the only levels are 0, 127 and 255. The bilinear resize back to the
  image's size blurs the steps slightly. The reference applies no other blur.
- scribble: the map at the image's size goes through non-maximum suppression (`prep.nms`: blur with
  sigma 3, keep the directional maxima above 127), a Gaussian blur of sigma 3 and a threshold: 255 where
  the blur is above 4, else 0. The result is binary white strokes on black.
Every control image is RGB (the grey map in all three channels) at the size of the image it was made from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from worker.engine.control.lines import to_rgb
from worker.engine.control.prep import (
    DETECT_RESOLUTION,
    resize_for_detection,
    rgb_on_white,
    safe_step,
    scribble_strokes,
)

WEIGHTS: tuple[str, ...] = ("ControlNetHED.pth",)
"""The published file, in the Hugging Face repo lllyasviel/Annotators."""

PROCESSORS: dict[str, str] = {
    "hed": "HED soft edges: sigmoid of the mean side output as grey, white edges on black",
    "softedge_hed": "HED soft edges (same as hed): white edges on black",
    "hed_safe": "HED soft edges quantised to levels 0, 127, 255 (safe_step, 2 steps): white edges on black",
    "softedge_hedsafe": "HED safe edges (same as hed_safe): white edges on black",
    "scribble_hed": "HED edges thinned (NMS), blurred and thresholded: binary white strokes on black",
    "scribble_hedsafe": "HED safe edges thinned (NMS), blurred and thresholded: binary white strokes on black",
}

SAFE = frozenset({"hed_safe", "softedge_hedsafe", "scribble_hedsafe"})
SCRIBBLE = frozenset({"scribble_hed", "scribble_hedsafe"})
PUBLISHED_WIDTHS = (64, 128, 256, 512, 512)
PUBLISHED_DEPTHS = (2, 2, 3, 3, 3)
TINY_WIDTHS = (4, 8, 8, 16, 16)


class HEDBlock(torch.nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """`depth` 3x3 convolutions (padding 1), each followed by ReLU, then a 1x1 projection to one channel."""

    def __init__(self, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.convs = torch.nn.Sequential(
            *(torch.nn.Conv2d(width if i else in_channels, width, 3, padding=1) for i in range(depth))
        )
        self.projection = torch.nn.Conv2d(width, 1, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's features and its side output (N, 1, H, W), a logit map."""
        for conv in self.convs:
            features = torch.relu(conv(features))
        return features, self.projection(features)


class HEDNetwork(torch.nn.Module):  # type: ignore[misc]
    """ControlNetHED_Apache2 under its published key names, with widths and depths as parameters."""

    def __init__(self, widths: Sequence[int] = PUBLISHED_WIDTHS, depths: Sequence[int] = PUBLISHED_DEPTHS) -> None:
        if not widths or len(widths) != len(depths) or min(*widths, *depths) < 1:
            raise ValueError(f"HED needs a width and a depth (each >= 1) per block; got {widths} and {depths}")
        super().__init__()
        self.blocks = len(widths)
        self.norm = torch.nn.Parameter(torch.zeros(1, 3, 1, 1))
        channels = 3
        for n, (width, depth) in enumerate(zip(widths, depths, strict=True), start=1):
            self.add_module(f"block{n}", HEDBlock(channels, width, depth))
            channels = width

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """pixels: (N, 3, H, W), RGB 0-255. The side outputs: block 1's at full size, each next one halved."""
        features = pixels - self.norm
        sides = []
        for n in range(1, self.blocks + 1):
            if n > 1:
                features = torch.nn.functional.max_pool2d(features, kernel_size=2, stride=2)
            features, side = self.get_submodule(f"block{n}")(features)
            sides.append(side)
        return sides


def layout_of(states: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """(widths, depths) of HED tensors: blocks count from 1 while `block{n}.projection.weight` exists; a
    block's width is its projection's input channels, its depth how many `block{n}.convs.{i}.weight` there are."""
    widths: list[int] = []
    depths: list[int] = []
    while f"block{len(widths) + 1}.projection.weight" in states:
        n = len(widths) + 1
        widths.append(int(states[f"block{n}.projection.weight"].shape[1]))
        depths.append(next(i for i in range(len(states) + 1) if f"block{n}.convs.{i}.weight" not in states))
    return widths, depths


def build_network(name: str, states: Mapping[str, torch.Tensor]) -> HEDNetwork:
    """The network the tensors describe, loaded strictly; ValueError naming `name` if they do not fit."""
    widths, depths = layout_of(states)
    if not widths or 0 in depths:
        raise ValueError(f"{name}: not HED weights (no block1.projection.weight or convs); keys {list(states)[:5]}")
    network = HEDNetwork(widths, depths)
    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(states)), sorted(set(states) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{name}: the weights do not fit HED: missing keys {missing[:5]}, unexpected {unexpected[:5]}")
    misshapen = [f"{key} {tuple(states[key].shape)}" for key in expected if states[key].shape != expected[key].shape]
    if misshapen:
        raise ValueError(f"{name}: the weights do not fit HED: shapes of {misshapen[:5]} (widths {widths})")
    network.load_state_dict(dict(states), strict=True)
    return network


def from_states(states: Mapping[str, Mapping[str, torch.Tensor]], device: str | torch.device = "cpu") -> Annotator:
    """The Annotator of `ControlNetHED.pth` as torch.load(weights_only=True) returns it (any "module." prefix
    removed), widths and depths read from the tensors; float32, eval mode, on `device`."""
    name = WEIGHTS[0]
    if name not in states:
        raise ValueError(f"HED needs the file {name}; got {sorted(states)}")
    tensors = {key.removeprefix("module."): value for key, value in states[name].items()}
    network = build_network(name, tensors)
    return Annotator(network.to(device=device, dtype=torch.float32).eval())


def tiny_states(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Random weights of a network with widths TINY_WIDTHS (published depths and key names), as
    {"ControlNetHED.pth": state dict}. `norm` is mid-grey and the first convolution is divided by 127.5, so
    pixels reach it in about -1..1; the projections are then scaled and shifted so that on a drawn test
    picture the mean logit has mean 0 and standard deviation 2, which makes the map grey rather than flat
    or saturated. Seeded; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = HEDNetwork(TINY_WIDTHS).eval()
    projections = [network.get_submodule(f"block{n}.projection") for n in range(1, network.blocks + 1)]
    with torch.no_grad():
        network.norm.fill_(127.5)
        network.block1.convs[0].weight.div_(127.5)
        logits = torch.cat(upsampled(network(calibration_picture()), (64, 64)), dim=1).mean(dim=1)
        scale = 2.0 / float(logits.std().clamp_min(1e-6))
        for projection in projections:
            projection.weight.mul_(scale)
            projection.bias.mul_(scale).sub_(scale * float(logits.mean()))
    return {WEIGHTS[0]: {key: value.detach().clone() for key, value in network.state_dict().items()}}


def calibration_picture() -> torch.Tensor:
    """(1, 3, 64, 64) pixels 0-255: white paper with a black square outline and a grey bar."""
    pixels = torch.full((1, 3, 64, 64), 255.0)
    pixels[..., 12:40, 12:40] = 0.0
    pixels[..., 15:37, 15:37] = 255.0
    pixels[..., 48:54, 8:56] = 96.0
    return pixels


def upsampled(sides: Sequence[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
    """Each side output resized to `size` bilinearly (half-pixel centres, as OpenCV's INTER_LINEAR), float32."""
    return [
        torch.nn.functional.interpolate(side.float(), size=size, mode="bilinear", align_corners=False) for side in sides
    ]


class Annotator:
    """The HED network on a device; called with an image and a name of PROCESSORS (see the module doc)."""

    def __init__(self, network: HEDNetwork, detect_resolution: int = DETECT_RESOLUTION) -> None:
        self.network = network
        self.detect_resolution = detect_resolution

    def __call__(self, image: Image.Image, processor: str) -> Image.Image:
        if processor not in PROCESSORS:
            raise ValueError(f"unknown HED processor {processor!r}; known: {', '.join(PROCESSORS)}")
        edges = self.edge_map(image, safe=processor in SAFE)
        return to_rgb(scribble_strokes(edges) if processor in SCRIBBLE else edges)

    def edge_map(self, image: Image.Image, *, safe: bool = False) -> np.ndarray:
        """The soft edge map (uint8, H x W at the image's size): 255 = edge, 0 = none, safe-quantised if asked."""
        probability = self.edge_probability(resize_for_detection(rgb_on_white(image), self.detect_resolution))
        if safe:
            probability = safe_step(probability)
        levels = (probability * 255.0).clip(0, 255).astype(np.uint8)
        return np.asarray(cv2.resize(levels, image.size, interpolation=cv2.INTER_LINEAR))

    def edge_probability(self, rgb: np.ndarray) -> np.ndarray:
        """Sigmoid of the mean side output, at the size of `rgb` (uint8, H x W x 3): float64, 0-1."""
        parameter = next(self.network.parameters())
        pixels = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            sides = self.network(pixels.to(device=parameter.device, dtype=parameter.dtype))
            logits = torch.cat(upsampled(sides, rgb.shape[:2]), dim=1).mean(dim=1)[0]
            return np.asarray(torch.sigmoid(logits.double()).cpu().numpy())
