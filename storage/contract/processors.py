"""The `cn_processor` names: which build a control image here, which map onto one that does, and which
need a network this deployment does not have.

The API validates with these names without importing the worker; worker.engine.control implements
`IMPLEMENTED`. Rule for every other value (a name from `UNAVAILABLE`, an unknown name, or a scheduler
name as in Segmind inpaint-auto's own example body): the job runs the ControlNet's default processor
(`DEFAULT_PROCESSOR`) and the result's `meta.not_applied` names `cn_processor`. It is never a 400, so a
body written for Segmind runs as printed, and never silently: the meta says what ran.
"""

from __future__ import annotations

IMPLEMENTED: dict[str, str] = {
    "none": "the input image as given (send an edge map, depth map or pose image yourself)",
    "canny": "OpenCV Canny edges, thresholds 100 and 200: white edges on black",
    "depth": "the registered depth estimator: near = bright",
    "normal_map": "surface normals from the depth estimator's map: RGB = (x right, y up, z toward the viewer)",
    "mlsd": "straight line segments (OpenCV's line segment detector): white lines on black",
    "scribble_xdog": "thresholded difference of Gaussians: white strokes on black",
    "lineart_standard": "difference between the image and its Gaussian blur: white lines on black",
    "binary": "Otsu threshold, dark becomes white: white strokes on black",
    "invert": "the image inverted: black lines on white become white lines on black",
    "color": "a coarse colour grid (the image shrunk 64 times, then enlarged without smoothing)",
    "shuffle": "the image cut into tiles and the tiles shuffled: colours kept, layout lost",
}
"""Processors that run here, each with its convention."""

MAPPED: dict[str, str] = {
    "depth_midas": "depth",
    "depth_leres": "depth",
    "depth_leres++": "depth",
    "depth_zoe": "depth",
    "depth_anything": "depth",
    "normal_midas": "normal_map",
    "scribble": "scribble_xdog",
    "threshold": "binary",
}
"""Names run by another processor: the depth variants by the one registered depth estimator (its model,
not LeReS or ZoeDepth; the result's meta shows `cn_processor: depth`), and aliases of the same algorithm."""

UNAVAILABLE: tuple[str, ...] = (
    *("hed", "hed_safe", "pidinet", "pidinet_safe", "pidinet_sketch", "pidinet_scribble", "te_hed", "teed"),
    *("softedge_hed", "softedge_hedsafe", "softedge_pidinet", "softedge_pidsafe", "softedge_teed"),
    *("scribble_hed", "scribble_hedsafe", "scribble_pidinet", "scribble_pidsafe"),
    *("openpose", "openpose_face", "openpose_faceonly", "openpose_full", "openpose_hand"),
    *("dw_openpose_full", "dwpose", "animal_openpose", "mediapipe_face", "densepose", "densepose_parula"),
    *("lineart", "lineart_realistic", "lineart_coarse", "lineart_anime", "lineart_anime_denoise"),
    *("normal_bae", "normal_dsine", "segmentation", "oneformer_coco", "oneformer_ade20k", "anime_face_segment"),
    *("clip_vision", "revision_clipvision", "revision_ignore_prompt", "reference_only", "reference_adain"),
    *("reference_adain+attn", "inpaint", "inpaint_only", "inpaint_only+lama", "tile_resample", "tile_colorfix"),
    *("tile_colorfix+sharp", "recolor_luminance", "recolor_intensity"),
)
"""Names other services accept that need a network we have no weights for (HED, PiDiNet, OpenPose,
the lineart and segmentation models, MediaPipe) or another pipeline (reference, IP-Adapter, inpaint,
tile): they fall back to the default processor, listed in `meta.not_applied`."""

DEFAULT_PROCESSOR: dict[str, str] = {"Canny": "canny", "Depth": "depth"}
"""cn_processor when a request names none or one that cannot run: the processor each ControlNet was
trained on, if we have it; `none` for any other cn_model (SoftEdge and Openpose need networks)."""

NEEDS_DEPTH: frozenset[str] = frozenset({"depth", "normal_map"})
"""Processors that run the registered depth estimator."""


def processor_applies(cn_processor: str | None) -> bool:
    """False when the request names a processor that cannot run here (the job's meta then says so)."""
    return cn_processor is None or cn_processor in IMPLEMENTED or cn_processor in MAPPED


def resolve_processor(cn_model: str, cn_processor: str | None) -> str:
    """The processor the job runs: the one named (through `MAPPED`), else `cn_model`'s default."""
    if cn_processor is not None and cn_processor in IMPLEMENTED:
        return cn_processor
    if cn_processor is not None and cn_processor in MAPPED:
        return MAPPED[cn_processor]
    return DEFAULT_PROCESSOR.get(cn_model, "none")
