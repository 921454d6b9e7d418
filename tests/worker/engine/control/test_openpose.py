"""The OpenPose annotator (worker.engine.control.openpose and openpose_draw): the published layouts, strict
loading, the post-processing on hand-made maps with known answers, and the whole pipeline on tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from worker.engine.control import openpose, openpose_draw
from worker.engine.control.openpose import BODY_FILE, FACE_FILE, HAND_FILE, PROCESSORS, WEIGHTS
from worker.engine.control.openpose_draw import (
    BODY_COLOURS,
    HAND_EDGE_COLOURS,
    LIMBS,
    connect_limbs,
    draw_bodies,
    draw_faces,
    draw_hands,
    find_bodies,
    find_face_box,
    find_face_peaks,
    find_hand_boxes,
    find_hand_peaks,
    find_peaks,
)

PUBLISHED = {
    BODY_FILE: (
        184,
        52_311_446,
        {
            "conv1_1.weight": (64, 3, 3, 3),
            "conv4_4_CPM.weight": (128, 256, 3, 3),
            "conv5_4_CPM_L1.weight": (512, 128, 1, 1),
            "conv5_5_CPM_L1.weight": (38, 512, 1, 1),
            "conv5_5_CPM_L2.bias": (19,),
            "Mconv1_stage2_L1.weight": (128, 185, 7, 7),
            "Mconv6_stage4_L2.weight": (128, 128, 1, 1),
            "Mconv7_stage6_L2.weight": (19, 128, 1, 1),
        },
    ),
    HAND_FILE: (
        104,
        36_832_324,
        {
            "conv1_1.weight": (64, 3, 3, 3),
            "conv5_2.weight": (512, 512, 3, 3),
            "conv5_3_CPM.weight": (128, 512, 3, 3),
            "conv6_2_CPM.weight": (22, 512, 1, 1),
            "Mconv1_stage2.weight": (128, 150, 7, 7),
            "Mconv7_stage6.bias": (22,),
        },
    ),
    FACE_FILE: (
        104,
        38_425_706,
        {
            "conv1_1.bias": (64,),
            "conv4_4.weight": (512, 512, 3, 3),
            "conv6_1_CPM.weight": (512, 128, 1, 1),
            "Mconv1_stage6.weight": (128, 199, 7, 7),
            "Mconv7_stage6.weight": (71, 128, 1, 1),
        },
    ),
}
"""Per published file: tensors, parameters (x 4 bytes: the files' 209, 147 and 154 MB) and some key shapes. Keys are
the caffe layer names, as the reference's `transfer` reads them (its module keys minus the block name)."""

SKELETON: dict[int, tuple[int, int]] = {
    0: (100, 40), 1: (100, 70), 2: (70, 70), 3: (60, 110), 4: (55, 150), 5: (130, 70), 6: (140, 110),
    7: (145, 150), 8: (85, 130), 9: (82, 160), 10: (80, 190), 11: (115, 130), 12: (118, 160), 13: (120, 190),
    14: (94, 34), 15: (106, 34), 16: (88, 38), 17: (112, 38),
}  # fmt: skip
"""An upright person in a 200 x 200 map, part -> (x, y)."""


def blob(size: tuple[int, int], x: int, y: int, peak: float = 1.0, sigma: float = 2.0) -> np.ndarray:
    rows, columns = np.mgrid[: size[0], : size[1]]
    return peak * np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))


def skeleton_maps(size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps with one blob per part of SKELETON, and PAFs holding each limb's unit direction within 3 px of it."""
    heatmaps = np.zeros((size, size, 19))
    pafs = np.zeros((size, size, 38))
    for part, (x, y) in SKELETON.items():
        heatmaps[:, :, part] = blob((size, size), x, y)
    rows, columns = np.mgrid[:size, :size]
    for part_a, part_b, channel_x, channel_y in LIMBS:
        start, end = np.array(SKELETON[part_a], float), np.array(SKELETON[part_b], float)
        direction = (end - start) / np.linalg.norm(end - start)
        offset_x, offset_y = columns - start[0], rows - start[1]
        along = offset_x * direction[0] + offset_y * direction[1]
        across = np.abs(offset_x * direction[1] - offset_y * direction[0])
        band = (along >= -1) & (along <= np.linalg.norm(end - start) + 1) & (across <= 3)
        pafs[:, :, channel_x][band], pafs[:, :, channel_y][band] = direction
    return heatmaps, pafs


def drawing() -> Image.Image:
    """Black shapes on white: a head, a body and two arms, 96 x 80."""
    image = Image.new("RGB", (96, 80), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse([38, 4, 58, 24], fill="black")
    draw.rectangle([42, 24, 54, 60], fill="black")
    draw.line([(42, 30), (20, 50)], fill="black", width=4)
    draw.line([(54, 30), (76, 50)], fill="black", width=4)
    return image


@pytest.fixture(scope="module")
def annotator() -> openpose.Annotator:
    return openpose.from_states(openpose.tiny_states())


@pytest.mark.parametrize("file", WEIGHTS)
def test_the_full_size_networks_have_the_published_layout_and_load_it_strictly(file: str) -> None:
    tensors, parameters, entries = PUBLISHED[file]
    state = openpose.build_net(file, openpose.PUBLISHED_WIDTHS[file]).state_dict()
    assert len(state) == tensors
    assert sum(value.numel() for value in state.values()) == parameters
    for key, shape in entries.items():
        assert tuple(state[key].shape) == shape, key
    loaded = openpose.load_net(file, state, "cpu")
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state.items())


def test_strict_loading_names_the_file_and_the_keys() -> None:
    states = openpose.tiny_states()
    del states[HAND_FILE]["Mconv3_stage4.weight"]
    with pytest.raises(ValueError, match=r"hand_pose_model\.pth: missing keys \['Mconv3_stage4\.weight'\]"):
        openpose.from_states(states)
    states = openpose.tiny_states()
    states[BODY_FILE]["model0.conv1_1.weight"] = states[BODY_FILE].pop("conv1_1.weight")
    with pytest.raises(ValueError, match=r"body_pose_model\.pth: missing keys \['conv1_1\.weight'\].*model0"):
        openpose.from_states(states)
    states = openpose.tiny_states()
    states[FACE_FILE]["Mconv7_stage6.weight"] = states[FACE_FILE]["Mconv7_stage6.weight"][:70]
    with pytest.raises(ValueError, match=r"facenet\.pth: the weights do not fit"):
        openpose.from_states(states)
    with pytest.raises(ValueError, match="facenet.pth"):
        openpose.from_states({file: state for file, state in openpose.tiny_states().items() if file != FACE_FILE})


def test_tiny_states_keep_the_published_keys_with_smaller_widths_and_are_reproducible() -> None:
    states = openpose.tiny_states(3)
    for file in WEIGHTS:
        assert set(states[file]) == set(openpose.state_shapes(file))
    assert states[BODY_FILE]["conv1_1.weight"].shape == (4, 3, 3, 3)
    assert states[BODY_FILE]["Mconv1_stage2_L1.weight"].shape == (8, 38 + 19 + 8, 7, 7)
    assert torch.equal(
        states[HAND_FILE]["conv6_2_CPM.weight"], openpose.tiny_states(3)[HAND_FILE]["conv6_2_CPM.weight"]
    )
    assert not torch.equal(
        states[HAND_FILE]["conv6_2_CPM.weight"], openpose.tiny_states(4)[HAND_FILE]["conv6_2_CPM.weight"]
    )


def test_peaks_are_the_local_maxima_above_the_threshold_with_ids_over_all_parts() -> None:
    heatmaps = np.zeros((60, 80, 19))
    heatmaps[:, :, 0] = blob((60, 80), 20, 15) + blob((60, 80), 60, 40, peak=0.8) + blob((60, 80), 40, 50, peak=0.05)
    heatmaps[:, :, 3] = blob((60, 80), 10, 30, peak=0.5)
    peaks = find_peaks(heatmaps)
    np.testing.assert_allclose(peaks[0], [[20, 15, 1.0, 0], [60, 40, 0.8, 1]])
    np.testing.assert_allclose(peaks[3], [[10, 30, 0.5, 2]])
    assert all(len(peaks[part]) == 0 for part in range(18) if part not in (0, 3))


def test_a_paf_from_one_peak_to_the_other_gives_exactly_one_limb() -> None:
    """Neck at (20, 40), right shoulder at (60, 40): limb 0 (neck -> right shoulder, PAF channels 12 and 13)."""
    peaks = [np.zeros((0, 4)) for _ in range(18)]
    peaks[1], peaks[2] = np.array([[20.0, 40, 0.9, 0]]), np.array([[60.0, 40, 0.8, 1]])
    pafs = np.zeros((80, 80, 38))
    pafs[:, :, 12] = 1.0
    connections = connect_limbs(peaks, pafs)
    np.testing.assert_allclose(connections[0], [[0, 1, 1.0, 0, 0]])  # mean projection 1, length 40 = 0.5 x height
    assert all(rows is None for k, rows in enumerate(connections) if k != 0)
    pafs[:, :, 12] = -1.0  # pointing from the shoulder to the neck
    assert connect_limbs(peaks, pafs)[0].shape == (0, 5)
    pafs[:, :, 12] = 1.0
    pafs[40, 20:40, 12] = 0.0  # 5 of the 10 samples fall here: fewer than 80 % above the threshold
    assert connect_limbs(peaks, pafs)[0].shape == (0, 5)


def test_two_people_side_by_side_are_paired_by_their_pafs() -> None:
    """Two necks and two shoulders, PAFs pointing right: each neck takes its own shoulder, not the far one."""
    peaks = [np.zeros((0, 4)) for _ in range(18)]
    peaks[1] = np.array([[10.0, 20, 1, 0], [10.0, 60, 1, 1]])
    peaks[2] = np.array([[30.0, 20, 1, 2], [30.0, 60, 1, 3]])
    pafs = np.zeros((80, 80, 38))
    pafs[:, :, 12] = 1.0
    np.testing.assert_allclose(connect_limbs(peaks, pafs)[0][:, :2], [[0, 2], [1, 3]])


def test_a_drawn_skeleton_is_found_as_one_body_with_every_part_in_place() -> None:
    bodies = find_bodies(*skeleton_maps())
    assert bodies == [[(float(x), float(y)) for x, y in (SKELETON[part] for part in range(18))]]


def test_parts_without_enough_limbs_make_no_person() -> None:
    heatmaps, pafs = skeleton_maps()
    heatmaps[:, :, 2:] = 0  # only the nose and the neck: one limb, two parts
    assert find_bodies(heatmaps, pafs) == []


def test_a_body_is_drawn_with_the_reference_colours() -> None:
    canvas = np.zeros((200, 200, 3), np.uint8)
    body: openpose_draw.Body = [(float(x), float(y)) for x, y in (SKELETON[part] for part in range(18))]
    body[16] = body[17] = None
    draw_bodies(canvas, [body])
    assert tuple(canvas[70, 85]) == (153, 0, 0)  # limb 0, neck -> right shoulder: (255, 0, 0) at 60 %
    assert tuple(canvas[70, 115]) == (153, 51, 0)  # limb 1, neck -> left shoulder: (255, 85, 0) at 60 %
    assert tuple(canvas[175, 81]) == (0, 153, 102)  # limb 8, right knee -> ankle: (0, 255, 170) at 60 %
    assert tuple(canvas[40, 100]) == BODY_COLOURS[0]  # the nose's dot
    assert tuple(canvas[150, 145]) == BODY_COLOURS[7]  # the left wrist's dot
    assert tuple(canvas[38, 88]) == (0, 0, 0)  # the right ear is missing: no dot
    assert tuple(canvas[5, 5]) == (0, 0, 0)


def test_hands_are_coloured_bones_with_blue_joints_and_faces_white_dots() -> None:
    assert HAND_EDGE_COLOURS[0] == (255, 0, 0) and HAND_EDGE_COLOURS[5] == (128, 255, 0)
    assert HAND_EDGE_COLOURS[10] == (0, 255, 255) and HAND_EDGE_COLOURS[19] == (255, 0, 77)
    hand: list[openpose_draw.Point | None] = [None] * 21
    hand[0], hand[1] = (10.0, 20.0), (50.0, 20.0)
    canvas = np.zeros((60, 60, 3), np.uint8)
    draw_hands(canvas, [hand])
    draw_faces(canvas, [[(40.0, 45.0)]])
    assert tuple(canvas[20, 30]) == HAND_EDGE_COLOURS[0]  # the bone wrist -> thumb
    assert tuple(canvas[20, 10]) == (0, 0, 255) and tuple(canvas[20, 50]) == (0, 0, 255)
    assert tuple(canvas[45, 40]) == (255, 255, 255)
    assert int(canvas[30:40, :].sum()) == 0


def test_hand_boxes_follow_the_forearm_and_are_clipped_to_the_image() -> None:
    body: openpose_draw.Body = [None] * 18
    body[2], body[3], body[4] = (100.0, 40.0), (100.0, 100.0), (100.0, 130.0)  # right shoulder, elbow, wrist
    # side 1.5 x max(30, 0.9 x 60) = 81, centred at the wrist + a third of the forearm: (100, 139.9)
    assert find_hand_boxes(body, 300, 300) == [(59, 99, 81)]
    assert find_hand_boxes(body, 300, 150) == [(59, 99, 50)]  # cut at the bottom edge
    body[3] = None
    assert find_hand_boxes(body, 300, 300) == []


def test_the_face_box_is_centred_on_the_nose_and_sized_by_eyes_and_ears() -> None:
    body: openpose_draw.Body = [None] * 18
    body[0], body[14], body[16] = (100.0, 100.0), (94.0, 96.0), (85.0, 100.0)
    assert find_face_box(body, 300, 300) == (77, 77, 45)  # half side max(3 x 6, 1.5 x 15) = 22.5
    body[16] = None
    assert find_face_box(body, 300, 300) == (82, 82, 36)  # half side 3 x 6
    body[14] = (97.0, 98.0)
    assert find_face_box(body, 300, 300) is None  # 18 px: too small


def test_hand_peaks_keep_the_strongest_region_and_scale_to_the_crop() -> None:
    maps = np.zeros((128, 128, 22))
    maps[:, :, 0] = blob((128, 128), 30, 40, peak=0.6, sigma=4) + blob((128, 128), 90, 100, peak=0.9, sigma=2)
    maps[:, :, 1] = blob((128, 128), 64, 0, peak=0.9, sigma=4)  # its maximum on the first row: not found
    points = find_hand_peaks(maps, 256, 64)
    assert points[0] == (60.0, 20.0)  # the wide blob carries more mass than the taller narrow one
    assert points[1] is None and points[2] is None
    assert len(points) == 21


def test_face_peaks_are_each_maps_maximum_above_the_threshold() -> None:
    maps = np.zeros((4, 30, 40))
    maps[0] = blob((30, 40), 10, 7, peak=0.5)
    maps[1] = blob((30, 40), 20, 20, peak=0.04)
    maps[2] = blob((30, 40), 0, 12, peak=0.9)
    maps[3] = blob((30, 40), 33, 25, peak=0.2)
    assert find_face_peaks(maps) == [(10.0, 7.0), (33.0, 25.0)]


def test_the_last_body_heatmaps_pass_a_relu_as_in_the_reference_and_the_pafs_do_not(annotator) -> None:
    """The reference's list of layers without ReLU names Mconv7_stage6_L1 twice and misses Mconv7_stage6_L2."""
    with torch.inference_mode():
        pafs, heatmaps = annotator.body(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert float(heatmaps.min()) == 0.0 and float(heatmaps.max()) > 0
    assert float(pafs.min()) < 0 < float(pafs.max())


def test_the_network_input_is_padded_to_the_stride(annotator) -> None:
    tensor = openpose.to_input(np.full((30, 41, 3), 64, np.uint8), annotator.body)
    assert tensor.shape == (1, 3, 32, 48) and tensor.dtype == torch.float32
    assert float(tensor[0, 0, 0, 0]) == 0.25 - 0.5 and float(tensor[0, 0, 31, 47]) == 0.0  # pad 128 -> 0


def test_every_processor_gives_a_deterministic_rgb_image_at_the_input_size(annotator) -> None:
    image = drawing()
    outputs = {name: annotator(image, name) for name in PROCESSORS}
    for name, out in outputs.items():
        assert out.mode == "RGB" and out.size == image.size, name
    assert np.array_equal(np.asarray(annotator(image, "openpose")), np.asarray(outputs["openpose"]))
    body = np.asarray(outputs["openpose"]).astype(int)
    assert body.any(), "the tiny random body network finds someone in the drawing"
    assert (body[..., 0] != body[..., 1]).any(), "bodies are coloured"
    face = np.asarray(outputs["openpose_faceonly"]).astype(int)
    assert (face[..., 0] == face[..., 1]).all() and (face[..., 1] == face[..., 2]).all(), "face dots are white"
    with pytest.raises(ValueError, match="openpose_hands"):
        annotator(image, "openpose_hands")


def test_hands_and_faces_are_drawn_in_boxes_the_body_gives(annotator) -> None:
    """The tiny hand and face networks on boxes: points inside each box, in image pixels."""
    bgr = np.asarray(drawing().resize((512, 512)))[:, :, ::-1].copy()
    with torch.inference_mode():
        hand = annotator.hand_points(bgr, (100, 200, 120))
        face = annotator.face_points(bgr, (300, 50, 64))
    assert len(hand) == 21 and any(point is not None for point in hand)
    assert all(100 < x < 220 and 200 < y < 320 for x, y in (point for point in hand if point is not None))
    assert face and all(300 < x < 364 and 50 < y < 114 for x, y in face)
