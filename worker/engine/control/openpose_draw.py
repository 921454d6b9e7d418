"""OpenPose post-processing without a network: keypoints from heatmaps and part affinity fields (PAFs), the hand
and face boxes a body implies, and the drawing of a pose image. Pure numpy and OpenCV.

Coordinates are pixels of the image the maps cover: x to the right, y down. A body is the CMU 18-point
skeleton, a list of 18 points (None where a part was not found), in this order: 0 nose, 1 neck, 2-4 right
shoulder, elbow, wrist, 5-7 left shoulder, elbow, wrist, 8-10 right hip, knee, ankle, 11-13 left hip, knee,
ankle, 14/15 right/left eye, 16/17 right/left ear. A hand is 21 points (0 the wrist, then four per finger from
the thumb); a face is a list of landmark points. Colours are RGB.

The algorithm, thresholds and colours are those of the OpenPose annotator ControlNet was trained with
(lllyasviel/ControlNet-v1-1-nightly annotator/openpose, as in huggingface/controlnet_aux open_pose).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import cv2
import numpy as np

Point = tuple[float, float]
Body = list[Point | None]

BODY_PARTS = 18
PEAK_THRESHOLD = 0.1
"""A body part is a local maximum of its Gaussian-filtered heatmap above this."""
HEATMAP_SIGMA = 3.0
HEATMAP_KERNEL = 25
"""The filter is scipy.ndimage.gaussian_filter(sigma=3)'s: radius 4 sigma, mirrored at the borders."""
LIMB_SAMPLES = 10
PAF_THRESHOLD = 0.05
"""A limb candidate needs the PAF, projected on its direction, above this at more than 80 % of its samples."""
MIN_PARTS, MIN_MEAN_SCORE = 4, 0.4
"""A person is kept with at least this many parts and this mean score per part."""

LIMBS: tuple[tuple[int, int, int, int], ...] = (
    *((1, 2, 12, 13), (1, 5, 20, 21), (2, 3, 14, 15), (3, 4, 16, 17), (5, 6, 22, 23), (6, 7, 24, 25)),
    *((1, 8, 0, 1), (8, 9, 2, 3), (9, 10, 4, 5), (1, 11, 6, 7), (11, 12, 8, 9), (12, 13, 10, 11)),
    *((1, 0, 28, 29), (0, 14, 30, 31), (14, 16, 34, 35), (0, 15, 32, 33), (15, 17, 36, 37)),
    *((2, 16, 18, 19), (5, 17, 26, 27)),
)
"""(part a, part b, PAF channel of x, PAF channel of y) per limb; the first 17 are drawn (the ear-shoulder
links only help to group parts)."""
DRAWN_LIMBS = 17
BODY_COLOURS: tuple[tuple[int, int, int], ...] = (
    *((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0)),
    *((0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255)),
    *((170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)),
)
"""Limb i is drawn in colour i at 60 % (each channel * 3 // 5); keypoint i is a dot in colour i."""
STICK_WIDTH, BODY_DOT_RADIUS = 4, 4
HAND_EDGES: tuple[tuple[int, int], ...] = tuple(
    (0 if joint == 0 else 4 * finger + joint, 4 * finger + joint + 1) for finger in range(5) for joint in range(4)
)
HAND_EDGE_COLOURS: tuple[tuple[int, int, int], ...] = tuple(
    (round(r * 255), round(g * 255), round(b * 255))
    for r, g, b in (colorsys.hsv_to_rgb(edge / len(HAND_EDGES), 1.0, 1.0) for edge in range(len(HAND_EDGES)))
)
"""Hand bone i: hue i/20 at full saturation and value, so the bones go round the colour circle."""
HAND_DOT_COLOUR, HAND_DOT_RADIUS, HAND_LINE_WIDTH = (0, 0, 255), 4, 2
HAND_PARTS, HAND_THRESHOLD = 21, 0.05
FACE_DOT_COLOUR, FACE_DOT_RADIUS, FACE_THRESHOLD = (255, 255, 255), 3, 0.05


def blur_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """The heatmap (float64) filtered as scipy.ndimage.gaussian_filter(heatmap, sigma=3) filters it."""
    blurred: np.ndarray = cv2.GaussianBlur(
        heatmap.astype(np.float64), (HEATMAP_KERNEL, HEATMAP_KERNEL), HEATMAP_SIGMA, borderType=cv2.BORDER_REFLECT
    )
    return blurred


def find_peaks(heatmaps: np.ndarray) -> list[np.ndarray]:
    """Per body part, its peaks as rows (x, y, score, id): local maxima (>= the four neighbours, zero outside
    the map) of the filtered heatmap above PEAK_THRESHOLD, scored by the unfiltered heatmap. Ids count up over
    all parts in order. heatmaps: (H, W, >= 18)."""
    peaks, next_id = [], 0
    for part in range(BODY_PARTS):
        raw = heatmaps[:, :, part].astype(np.float64)
        padded = np.pad(blur_heatmap(raw), 1)
        centre = padded[1:-1, 1:-1]
        above = centre > PEAK_THRESHOLD
        for shifted in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
            above &= centre >= shifted
        ys, xs = np.nonzero(above)
        ids = np.arange(next_id, next_id + len(xs))
        peaks.append(np.stack([xs, ys, raw[ys, xs], ids], axis=1).astype(np.float64))
        next_id += len(xs)
    return peaks


def score_limbs(starts: np.ndarray, ends: np.ndarray, field: np.ndarray, height: int) -> np.ndarray:
    """(len(starts), len(ends)) scores of each start-end pair as a limb, NaN where it fails a criterion.

    The PAF (field: (H, W, 2), x and y) is sampled at LIMB_SAMPLES points from start to end (rounded to pixels)
    and projected on the unit direction; the score is the mean projection, less a penalty for a limb longer
    than half the image height. Pairs need a positive score and more than 80 % of samples above PAF_THRESHOLD.
    """
    start, end = starts[:, None, :2], ends[None, :, :2]
    vector = end - start
    norm = np.maximum(np.hypot(vector[..., 0], vector[..., 1]), 0.001)
    step = np.arange(LIMB_SAMPLES)[:, None, None, None]
    samples = np.round(start + step * (vector / (LIMB_SAMPLES - 1))).astype(np.intp)
    values = field[samples[..., 1], samples[..., 0]]
    projected = (values * (vector / norm[..., None])).sum(axis=-1)
    score = projected.mean(axis=0) + np.minimum(0.5 * height / norm - 1, 0)
    enough = (projected > PAF_THRESHOLD).sum(axis=0) > 0.8 * LIMB_SAMPLES
    return np.where(enough & (score > 0), score, np.nan)


def connect_limb(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The limbs kept, greedily from the best score, each peak used once, at most min(starts, ends) limbs:
    rows (start id, end id, score, start index, end index)."""
    rows_i, rows_j = np.nonzero(~np.isnan(scores))
    order = np.argsort(-scores[rows_i, rows_j], kind="stable")
    kept: list[tuple[float, float, float, int, int]] = []
    used_starts, used_ends = set(), set()
    for i, j in zip(rows_i[order].tolist(), rows_j[order].tolist(), strict=True):
        if i in used_starts or j in used_ends:
            continue
        used_starts.add(i)
        used_ends.add(j)
        kept.append((starts[i, 3], ends[j, 3], scores[i, j], i, j))
        if len(kept) >= min(len(starts), len(ends)):
            break
    return np.array(kept, dtype=np.float64).reshape(-1, 5)


def connect_limbs(peaks: Sequence[np.ndarray], pafs: np.ndarray) -> list[np.ndarray | None]:
    """Per limb of LIMBS, its connections (connect_limb's rows), or None when either part has no peak."""
    connections: list[np.ndarray | None] = []
    for part_a, part_b, channel_x, channel_y in LIMBS:
        starts, ends = peaks[part_a], peaks[part_b]
        if len(starts) == 0 or len(ends) == 0:
            connections.append(None)
            continue
        scores = score_limbs(starts, ends, pafs[:, :, [channel_x, channel_y]], pafs.shape[0])
        connections.append(connect_limb(starts, ends, scores))
    return connections


def assemble_people(connections: Sequence[np.ndarray | None], candidates: np.ndarray) -> np.ndarray:
    """People as rows of 20: peak ids of the 18 parts (-1 where absent), total score, number of parts.

    Limbs join the person holding either end; a limb whose ends belong to two people with no part in common
    merges them; a limb of neither starts a new person (not for the two ear-shoulder links). Then people with
    fewer than MIN_PARTS parts, or a mean score under MIN_MEAN_SCORE, are dropped. candidates: all peaks,
    row = id.
    """
    people = np.full((0, BODY_PARTS + 2), -1.0)
    for k, rows in enumerate(connections):
        part_a, part_b = LIMBS[k][:2]
        for id_a, id_b, score, _, _ in rows if rows is not None else ():
            found = [p for p in range(len(people)) if people[p, part_a] == id_a or people[p, part_b] == id_b]
            merging = len(found) >= 2 and not _share_parts(people[found[0]], people[found[1]])
            if (len(found) == 1 and people[found[0], part_b] != id_b) or (len(found) >= 2 and not merging):
                person = people[found[0]]
                person[part_b] = id_b
                person[-1] += 1
                person[-2] += candidates[int(id_b), 2] + score
            elif merging:
                first, second = people[found[0]], people[found[1]]
                first[:-2] += second[:-2] + 1
                first[-2:] += second[-2:]
                first[-2] += score
                people = np.delete(people, found[1], axis=0)
            elif not found and k < DRAWN_LIMBS:
                row = np.full(BODY_PARTS + 2, -1.0)
                row[[part_a, part_b]] = id_a, id_b
                row[-1] = 2
                row[-2] = candidates[int(id_a), 2] + candidates[int(id_b), 2] + score
                people = np.vstack([people, row])
    keep = (people[:, -1] >= MIN_PARTS) & (people[:, -2] / np.maximum(people[:, -1], 1) >= MIN_MEAN_SCORE)
    kept: np.ndarray = people[keep]
    return kept


def _share_parts(first: np.ndarray, second: np.ndarray) -> bool:
    return bool(((first[:-2] >= 0) & (second[:-2] >= 0)).any())


def find_bodies(heatmaps: np.ndarray, pafs: np.ndarray) -> list[Body]:
    """The people in body maps at image size (heatmaps (H, W, >= 18), pafs (H, W, 38)), as 18-point bodies."""
    peaks = find_peaks(heatmaps)
    candidates = np.concatenate(peaks, axis=0)
    people = assemble_people(connect_limbs(peaks, pafs), candidates)
    return [
        [None if index < 0 else (candidates[index, 0], candidates[index, 1]) for index in row[:BODY_PARTS].astype(int)]
        for row in people
    ]


def find_hand_boxes(body: Body, width: int, height: int) -> list[tuple[int, int, int]]:
    """Square boxes (left, top, side) around the left hand, then the right, of a body with shoulder, elbow and
    wrist (OpenPose's hand detector): centred a third of the forearm beyond the wrist, side 1.5 x max(forearm,
    0.9 x upper arm), clipped to the image; boxes under 20 px are dropped."""
    boxes = []
    for shoulder, elbow, wrist in ((body[5], body[6], body[7]), (body[2], body[3], body[4])):
        if shoulder is None or elbow is None or wrist is None:
            continue
        forearm, upper_arm = math.dist(wrist, elbow), math.dist(elbow, shoulder)
        side = 1.5 * max(forearm, 0.9 * upper_arm)
        left = max(wrist[0] + 0.33 * (wrist[0] - elbow[0]) - side / 2, 0)
        top = max(wrist[1] + 0.33 * (wrist[1] - elbow[1]) - side / 2, 0)
        side = min(side if left + side <= width else width - left, side if top + side <= height else height - top)
        if side >= 20:
            boxes.append((int(left), int(top), int(side)))
    return boxes


def find_face_box(body: Body, width: int, height: int) -> tuple[int, int, int] | None:
    """A box (left, top, side) around the face of a body with a nose and an eye or ear: centred on the nose,
    half side = max(3 x nose-eye, 1.5 x nose-ear) in the Chebyshev distance, clipped as the reference clips
    (the overflow test uses the half side); None under 20 px."""
    nose = body[0]
    if nose is None or all(body[part] is None for part in (14, 15, 16, 17)):
        return None
    half = 0.0
    for part, factor in ((14, 3.0), (15, 3.0), (16, 1.5), (17, 1.5)):
        point = body[part]
        if point is not None:
            half = max(half, factor * max(abs(nose[0] - point[0]), abs(nose[1] - point[1])))
    left, top = max(nose[0] - half, 0), max(nose[1] - half, 0)
    side = min(2 * half if left + half <= width else width - left, 2 * half if top + half <= height else height - top)
    return (int(left), int(top), int(side)) if side >= 20 else None


def find_hand_peaks(heatmaps: np.ndarray, width: int, height: int) -> list[Point | None]:
    """The 21 hand points in a (width x height) crop from its heatmaps (S, S, >= 21) at any square size S.

    Per part: the filtered heatmap above HAND_THRESHOLD, its 8-connected region with the largest sum of the
    unfiltered heatmap, and that region's maximum, scaled to the crop (truncated to whole pixels). None where
    no pixel passes, or where the point falls on the crop's first row or column (the reference marks both so).
    """
    size = heatmaps.shape[0]
    points: list[Point | None] = []
    for part in range(HAND_PARTS):
        raw = heatmaps[:, :, part].astype(np.float64)
        binary = (blur_heatmap(raw) > HAND_THRESHOLD).astype(np.uint8)
        if not binary.any():
            points.append(None)
            continue
        count, labels = cv2.connectedComponents(binary, connectivity=8)
        sums = np.bincount(labels.ravel(), weights=raw.ravel(), minlength=count)[1:]
        kept = np.where(labels == int(np.argmax(sums)) + 1, raw, 0.0)
        row, column = np.unravel_index(int(np.argmax(kept)), kept.shape)
        x, y = int(column * width / size), int(row * height / size)
        points.append((float(x), float(y)) if x > 0 and y > 0 else None)
    return points


def find_face_peaks(heatmaps: np.ndarray) -> list[Point]:
    """Face points from heatmaps (C, H, W) at the crop's size: each map's maximum where it exceeds
    FACE_THRESHOLD, except on the first row or column. Every map counts, the 71st (background) too, as in the
    reference."""
    points: list[Point] = []
    for heatmap in heatmaps:
        if heatmap.max() > FACE_THRESHOLD:
            y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
            if x > 0 and y > 0:
                points.append((float(x), float(y)))
    return points


def draw_bodies(canvas: np.ndarray, bodies: Sequence[Body]) -> None:
    """Draws on canvas (H, W, 3 RGB uint8): every body's limbs as filled ellipses 2 x STICK_WIDTH px thick in
    their colour at 60 %, then every keypoint as a dot in its full colour."""
    for body in bodies:
        for (part_a, part_b, _, _), colour in zip(LIMBS[:DRAWN_LIMBS], BODY_COLOURS, strict=False):
            start, end = body[part_a], body[part_b]
            if start is None or end is None:
                continue
            centre = (int((start[0] + end[0]) / 2), int((start[1] + end[1]) / 2))
            length = math.dist(start, end)
            angle = int(math.degrees(math.atan2(start[1] - end[1], start[0] - end[0])))
            polygon = cv2.ellipse2Poly(centre, (int(length / 2), STICK_WIDTH), angle, 0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, tuple(channel * 3 // 5 for channel in colour))
    for body in bodies:
        for point, colour in zip(body, BODY_COLOURS, strict=True):
            if point is not None:
                cv2.circle(canvas, (int(point[0]), int(point[1])), BODY_DOT_RADIUS, colour, thickness=-1)


def draw_hands(canvas: np.ndarray, hands: Sequence[Sequence[Point | None]]) -> None:
    """Draws each hand's bones as HAND_LINE_WIDTH px lines in HAND_EDGE_COLOURS, then its points as blue dots."""
    for hand in hands:
        for (first, second), colour in zip(HAND_EDGES, HAND_EDGE_COLOURS, strict=True):
            start, end = _pixel(hand[first]), _pixel(hand[second])
            if start is not None and end is not None:
                cv2.line(canvas, start, end, colour, thickness=HAND_LINE_WIDTH)
        for point in map(_pixel, hand):
            if point is not None:
                cv2.circle(canvas, point, HAND_DOT_RADIUS, HAND_DOT_COLOUR, thickness=-1)


def draw_faces(canvas: np.ndarray, faces: Sequence[Sequence[Point | None]]) -> None:
    """Draws each face landmark as a white dot."""
    for face in faces:
        for point in map(_pixel, face):
            if point is not None:
                cv2.circle(canvas, point, FACE_DOT_RADIUS, FACE_DOT_COLOUR, thickness=-1)


def _pixel(point: Point | None) -> tuple[int, int] | None:
    """The point in whole pixels; None for a missing point or one on the image's first row or column."""
    if point is None or int(point[0]) < 1 or int(point[1]) < 1:
        return None
    return int(point[0]), int(point[1])
