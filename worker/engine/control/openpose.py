"""OpenPose control images: the CMU body, hand and face keypoint networks ControlNet's annotator runs.

Networks and files (Hugging Face repo lllyasviel/Annotators):
- body_pose_model.pth: the 18-keypoint body model, a VGG-19 stem (to conv4_4_CPM, 128 channels at 1/8 scale)
  and 6 stages of two branches, L1 = 38 part affinity fields (x and y of 19 limbs) and L2 = 19 heatmaps
  (18 parts + background).
- hand_pose_model.pth: the hand model, a VGG stem to conv5_3_CPM and 6 stages of 22 heatmaps (21 points).
- facenet.pth: the face model, the hand model's layout with 71 heatmaps (70 landmarks + background).
Each file is a flat state dict keyed "<caffe layer>.weight" / ".bias" ("conv1_1.weight", "Mconv7_stage6_L2.bias"):
the reference nests its layers in blocks (model0, model1_1, ...) and drops the block name when it loads
(its `transfer`). Here each convolution is registered under its layer name, so the module's state dict has
the published keys and the files load as they are, strictly. Widths other than the published ones (see
tiny_states) are read from the weights' shapes; the key names never change.

Processors (all on black, at the input's size): `openpose` the body, `openpose_hand` body and hands,
`openpose_face` body and face, `openpose_faceonly` the face alone, `openpose_full` all three; the drawing
conventions are openpose_draw's. As the reference does, the image is resized so its shorter side is 512
(sides rounded to multiples of 64), fed to the networks in BGR order scaled to [-0.5, 0.5), and the drawing is
resized back. One scale only, to keep CPU cost low: the body network sees the image at 0.5 x 368 px high (the
reference's single scale), each hand crop at 368 px (the reference averages 0.5, 1, 1.5 and 2 x 368), each face
crop at 384 px. As in the reference, the last body heatmap output passes through a ReLU (its list of layers
without one names Mconv7_stage6_L1 twice).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional

from worker.engine.control.openpose_draw import (
    Point,
    draw_bodies,
    draw_faces,
    draw_hands,
    find_bodies,
    find_face_box,
    find_face_peaks,
    find_hand_boxes,
    find_hand_peaks,
)
from worker.engine.control.prep import resize_for_detection

BODY_FILE, HAND_FILE, FACE_FILE = "body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"
WEIGHTS: tuple[str, ...] = (BODY_FILE, HAND_FILE, FACE_FILE)

PROCESSORS: dict[str, str] = {
    "openpose": "body skeletons on black: limbs as ellipses in 17 colours at 60 %, keypoints as dots in 18 colours",
    "openpose_hand": "openpose plus hands: bones as 2 px lines coloured round the hue circle, joints as blue dots",
    "openpose_face": "openpose plus face landmarks as white dots",
    "openpose_faceonly": "face landmarks only, white dots on black (bodies are found to place the faces)",
    "openpose_full": "openpose plus hands plus face landmarks",
}
DRAWS: dict[str, tuple[bool, bool, bool]] = {
    "openpose": (True, False, False),
    "openpose_hand": (True, True, False),
    "openpose_face": (True, False, True),
    "openpose_faceonly": (False, False, True),
    "openpose_full": (True, True, True),
}
"""Per processor: whether it draws bodies, hands, faces."""

BODY_HEIGHT = 0.5 * 368
HAND_SIZE, HAND_BLUR, HAND_MAP_SIZE, FACE_SIZE = 368, 0.8, 128, 384
STRIDE, PAD_VALUE = 8, 128


class Conv(NamedTuple):
    """One convolution: its published layer name, a width symbol (its output channels), its kernel size, and
    whether a ReLU follows it."""

    name: str
    width: str
    kernel: int
    relu: bool = True


POOL = None
Layers = tuple[Conv | None, ...]
"""A chain of convolutions (padding kernel // 2) and 2 x 2 max pools (None)."""


def _stem(depth4: int, cpm: Layers) -> Layers:
    c3 = tuple(Conv(f"conv3_{i}", "c3", 3) for i in range(1, 5))
    c4 = tuple(Conv(name, "c4", 3) for name in ("conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2"))
    return (
        *(Conv("conv1_1", "c1", 3), Conv("conv1_2", "c1", 3), POOL, Conv("conv2_1", "c2", 3), Conv("conv2_2", "c2", 3)),
        *(POOL, *c3, POOL, *c4[:depth4], *cpm),
    )


def _stage(stage: int, suffix: str, output: str, relu_out: bool = False) -> Layers:
    hidden = tuple(Conv(f"Mconv{i}_stage{stage}{suffix}", "stage", 7) for i in range(1, 6))
    return (
        *hidden,
        Conv(f"Mconv6_stage{stage}{suffix}", "stage", 1),
        Conv(f"Mconv7_stage{stage}{suffix}", output, 1, relu_out),
    )


def _body_stage1(branch: str, output: str) -> Layers:
    hidden = tuple(Conv(f"conv5_{i}_CPM_{branch}", "s1", 3) for i in range(1, 4))
    return (*hidden, Conv(f"conv5_4_CPM_{branch}", "s1_wide", 1), Conv(f"conv5_5_CPM_{branch}", output, 1, False))


BODY_LAYOUT: dict[str, Layers] = {
    "stem": _stem(2, (Conv("conv4_3_CPM", "cpm", 3), Conv("conv4_4_CPM", "feature", 3))),
    "paf1": _body_stage1("L1", "paf"),
    "heat1": _body_stage1("L2", "heat"),
    **{f"paf{t}": _stage(t, "_L1", "paf") for t in range(2, 7)},
    **{f"heat{t}": _stage(t, "_L2", "heat", relu_out=t == 6) for t in range(2, 7)},
}
KEYPOINT_LAYOUT: dict[str, Layers] = {
    "stem": _stem(6, (Conv("conv5_3_CPM", "feature", 3),)),
    "stage1": (Conv("conv6_1_CPM", "s1_wide", 1), Conv("conv6_2_CPM", "out", 1, False)),
    **{f"stage{t}": _stage(t, "", "out") for t in range(2, 7)},
}
BODY_WIDTHS = {
    "c1": 64,
    "c2": 128,
    "c3": 256,
    "c4": 512,
    "cpm": 256,
    "feature": 128,
    "s1": 128,
    "s1_wide": 512,
    "stage": 128,
}
KEYPOINT_WIDTHS = {"c1": 64, "c2": 128, "c3": 256, "c4": 512, "feature": 128, "s1_wide": 512, "stage": 128}
OUTPUTS: dict[str, dict[str, int]] = {
    BODY_FILE: {"paf": 38, "heat": 19},
    HAND_FILE: {"out": 22},
    FACE_FILE: {"out": 71},
}
"""Output widths, fixed by what the maps mean; the other widths may shrink (tiny_states)."""
LAYOUTS = {BODY_FILE: BODY_LAYOUT, HAND_FILE: KEYPOINT_LAYOUT, FACE_FILE: KEYPOINT_LAYOUT}
PUBLISHED_WIDTHS = {BODY_FILE: BODY_WIDTHS, HAND_FILE: KEYPOINT_WIDTHS, FACE_FILE: KEYPOINT_WIDTHS}
TINY_WIDTHS = {"c1": 4, "c2": 8, "c3": 8, "c4": 8, "cpm": 8, "feature": 8, "s1": 8, "s1_wide": 8, "stage": 8}


def iterate_convs(layout: Mapping[str, Layers]) -> Iterator[Conv]:
    """Every convolution of a layout, in order."""
    return (layer for layers in layout.values() for layer in layers if layer is not None)


class PoseNet(nn.Module):  # type: ignore[misc]  # torch is Any to mypy here
    """One of the three networks, its convolutions registered under their published names.

    forward(x: (N, 3, H, W), H and W multiples of 8) returns the last stage's maps at 1/8 scale: for the body
    (PAFs, heatmaps), else the heatmaps. Every stage after the first reads the previous stage's maps
    concatenated with the stem's features.
    """

    def __init__(self, layout: Mapping[str, Layers], widths: Mapping[str, int]) -> None:
        super().__init__()
        self.layout = dict(layout)
        self.is_body = "paf1" in layout
        outputs = widths["paf"] + widths["heat"] if self.is_body else widths["out"]
        for block, layers in layout.items():
            channels = (
                3 if block == "stem" else widths["feature"] + (0 if block in ("paf1", "heat1", "stage1") else outputs)
            )
            for layer in layers:
                if layer is not None:
                    self.add_module(
                        layer.name, nn.Conv2d(channels, widths[layer.width], layer.kernel, padding=layer.kernel // 2)
                    )
                    channels = widths[layer.width]

    def run(self, block: str, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layout[block]:
            if layer is None:
                x = functional.max_pool2d(x, 2, 2)
            else:
                x = getattr(self, layer.name)(x)
                x = functional.relu(x) if layer.relu else x
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.run("stem", x)
        if not self.is_body:
            maps = self.run("stage1", features)
            for t in range(2, 7):
                maps = self.run(f"stage{t}", torch.cat([maps, features], 1))
            return maps
        pafs, heatmaps = self.run("paf1", features), self.run("heat1", features)
        for t in range(2, 7):
            both = torch.cat([pafs, heatmaps, features], 1)
            pafs, heatmaps = self.run(f"paf{t}", both), self.run(f"heat{t}", both)
        return pafs, heatmaps


def state_shapes(file: str, widths: Mapping[str, int] | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a file's state dict (published widths unless given): its published layout."""
    net = build_net(file, widths or PUBLISHED_WIDTHS[file], device="meta")
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def build_net(file: str, widths: Mapping[str, int], device: str | torch.device = "cpu") -> PoseNet:
    with torch.device(device):
        return PoseNet(LAYOUTS[file], {**widths, **OUTPUTS[file]})


def load_net(file: str, state: Mapping[str, torch.Tensor], device: str | torch.device) -> PoseNet:
    """The network of `file` with `state` loaded strictly, its widths read from the state's shapes."""
    convs = list(iterate_convs(LAYOUTS[file]))
    expected = {f"{conv.name}.{param}" for conv in convs for param in ("weight", "bias")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{file}: missing keys {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    widths = {conv.width: int(state[f"{conv.name}.weight"].shape[0]) for conv in reversed(convs)}
    net = build_net(file, widths)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{file}: the weights do not fit the layout: {error}") from error
    loaded: PoseNet = net.to(device=device, dtype=torch.float32).eval()
    return loaded


def from_states(states: Mapping[str, Mapping[str, torch.Tensor]], device: str | torch.device = "cpu") -> Annotator:
    """The annotator from the three published files' state dicts (keyed by file name, each as torch.load
    returns it), loaded strictly: a missing or unexpected key, or a misfitting shape, raises ValueError."""
    missing = [file for file in WEIGHTS if file not in states]
    if missing:
        raise ValueError(f"no state dict for {missing}; the OpenPose annotator needs {list(WEIGHTS)}")
    return Annotator(*(load_net(file, states[file], device) for file in WEIGHTS))


def tiny_states(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Random state dicts with the published keys and TINY_WIDTHS (outputs keep their published widths):
    He-normal weights and small random biases, from a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    states = {}
    for file in WEIGHTS:
        state = {}
        for key, shape in state_shapes(file, TINY_WIDTHS).items():
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            scale = (2.0 / fan_in) ** 0.5 if len(shape) > 1 else 0.1
            state[key] = torch.randn(shape, generator=generator) * scale
        states[file] = state
    return states


class Annotator:
    """The body, hand and face networks, resident on one device. Not thread-safe.

    Called as annotator(image, processor) it returns the pose image for a processor of PROCESSORS: RGB at the
    image's size, drawn on black at the detection size and resized back bilinearly.
    """

    def __init__(self, body: PoseNet, hand: PoseNet, face: PoseNet) -> None:
        self.body, self.hand, self.face = body, hand, face

    def __call__(self, image: Image.Image, processor: str) -> Image.Image:
        if processor not in DRAWS:
            raise ValueError(f"unknown OpenPose processor {processor!r}; expected one of {sorted(DRAWS)}")
        draw_body, draw_hand, draw_face = DRAWS[processor]
        bgr = np.ascontiguousarray(resize_for_detection(np.asarray(image.convert("RGB")))[:, :, ::-1])
        height, width = bgr.shape[:2]
        hands: list[list[Point | None]] = []
        faces: list[list[Point]] = []
        with torch.inference_mode():
            bodies = find_bodies(*self.body_maps(bgr))
            for body in bodies if draw_hand else []:
                hands += [self.hand_points(bgr, box) for box in find_hand_boxes(body, width, height)]
            for box in (find_face_box(body, width, height) for body in (bodies if draw_face else [])):
                faces += [] if box is None else [self.face_points(bgr, box)]
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        draw_bodies(canvas, bodies if draw_body else [])
        draw_hands(canvas, hands)
        draw_faces(canvas, faces)
        return Image.fromarray(cv2.resize(canvas, image.size, interpolation=cv2.INTER_LINEAR))

    def body_maps(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (H, W, 19) and PAFs (H, W, 38) at the image's size, from one pass at BODY_HEIGHT px high."""
        height, width = bgr.shape[:2]
        scale = BODY_HEIGHT / height
        pafs, heatmaps = self.body(to_input(resize_smartly(bgr, int(width * scale), int(height * scale)), self.body))
        maps = maps_to_size(torch.cat([heatmaps, pafs], 1), int(width * scale), int(height * scale))
        maps = resize_smartly(maps, width, height)
        return maps[:, :, :19], maps[:, :, 19:]

    def hand_points(self, bgr: np.ndarray, box: tuple[int, int, int]) -> list[Point | None]:
        """The 21 points of the hand in a box (left, top, side), in image pixels."""
        left, top, side = box
        crop = bgr[top : top + side, left : left + side]
        scaled = resize_smartly(cv2.GaussianBlur(crop, (0, 0), HAND_BLUR), HAND_SIZE, HAND_SIZE)
        maps = maps_to_size(self.hand(to_input(scaled, self.hand)), HAND_SIZE, HAND_SIZE)
        points = find_hand_peaks(resize_smartly(maps, HAND_MAP_SIZE, HAND_MAP_SIZE), crop.shape[1], crop.shape[0])
        return [None if point is None else (point[0] + left, point[1] + top) for point in points]

    def face_points(self, bgr: np.ndarray, box: tuple[int, int, int]) -> list[Point]:
        """The face landmarks in a box (left, top, side), in image pixels."""
        left, top, side = box
        crop = bgr[top : top + side, left : left + side]
        maps = self.face(to_input(resize_smartly(crop, FACE_SIZE, FACE_SIZE), self.face))
        maps = functional.interpolate(maps, crop.shape[:2], mode="bilinear", align_corners=True)
        return [(x + left, y + top) for x, y in find_face_peaks(maps[0].detach().float().cpu().numpy())]


def resize_smartly(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """The array (H, W, C) resized as the reference does: area averaging to shrink, Lanczos to enlarge (each
    channel on its own; OpenCV takes at most 4 at a time)."""
    if pixels.shape[2] > 4:
        chunks = [resize_smartly(pixels[:, :, i : i + 4], width, height) for i in range(0, pixels.shape[2], 4)]
        return np.concatenate(chunks, axis=2)
    grow = (width + height) / (pixels.shape[1] + pixels.shape[0])
    interpolation = cv2.INTER_AREA if grow < 1 else cv2.INTER_LANCZOS4
    return np.asarray(cv2.resize(pixels, (width, height), interpolation=interpolation)).reshape(height, width, -1)


def to_input(bgr: np.ndarray, net: PoseNet) -> torch.Tensor:
    """The network input: the image padded right and down with PAD_VALUE to multiples of STRIDE, as
    (1, 3, H, W) float32 pixel / 256 - 0.5 on the network's device."""
    height, width = bgr.shape[:2]
    padded = cv2.copyMakeBorder(
        bgr, 0, -height % STRIDE, 0, -width % STRIDE, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    pixels = padded.astype(np.float32) / 256 - 0.5
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].to(next(net.parameters()).device)


def maps_to_size(maps: torch.Tensor, width: int, height: int) -> np.ndarray:
    """Network maps (1, C, h, w) at 1/STRIDE scale as (height, width, C) float32: enlarged STRIDE times (Lanczos),
    the padding cut off."""
    array = maps[0].detach().permute(1, 2, 0).float().cpu().numpy()
    enlarged = resize_smartly(array, array.shape[1] * STRIDE, array.shape[0] * STRIDE)
    return enlarged[:height, :width]
