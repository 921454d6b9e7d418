"""The `cn_processor` names: which build a control image here, which map onto one that does, and which
need a network or a pipeline this service does not have.

The API validates with these names without importing the worker; worker.engine.control implements
`IMPLEMENTED`. Three kinds run here:

- pure processors (OpenCV and numpy: canny, mlsd, scribble_xdog, ...), no weights;
- depth processors, each running a registered `depth_estimator` (`DEPTH_MODELS`);
- the ControlNet 1.1 annotators (HED, PiDiNet, line art, OpenPose), each a network whose weights are the
  files of the registered `annotators` asset, lllyasviel/Annotators by default (`ANNOTATOR_MODULES`).

Rule for every other value (a name from `UNAVAILABLE`, an unknown name, or a scheduler name as in
Segmind inpaint-auto's own example body): the job runs the ControlNet's default processor
(`DEFAULT_PROCESSOR`) and the result's `meta.not_applied` names `cn_processor`. It is never a 400, so a
body written for Segmind runs as printed, and never silently: the meta says what ran.
"""

from __future__ import annotations

from storage.contract.assets import ANNOTATORS, DEPTH_ESTIMATOR

PURE: dict[str, str] = {
    "none": "the input image as given (send an edge map, depth map or pose image yourself)",
    "canny": "OpenCV Canny edges, thresholds 100 and 200: white edges on black",
    "mlsd": "straight line segments (OpenCV's line segment detector): white lines on black",
    "scribble_xdog": "thresholded difference of Gaussians: white strokes on black",
    "lineart_standard": "difference between the image and its Gaussian blur: white lines on black",
    "binary": "Otsu threshold, dark becomes white: white strokes on black",
    "invert": "the image inverted: black lines on white become white lines on black",
    "color": "a coarse colour grid (the image shrunk 64 times, then enlarged without smoothing)",
    "shuffle": "the image cut into tiles and the tiles shuffled: colours kept, layout lost",
}
"""Processors that need no model."""

DEPTH_MODELS: dict[str, str] = {
    "depth": DEPTH_ESTIMATOR,
    "normal_map": DEPTH_ESTIMATOR,
    "depth_anything": "depth_anything",
    "depth_zoe": "depth_zoe",
}
"""Processors that run a depth estimator: the registered `depth_estimator` name each runs."""

DEPTH: dict[str, str] = {
    "depth": "the registered depth estimator `depth` (MiDaS DPT-Hybrid by default): near = bright",
    "normal_map": "surface normals from the `depth` estimator's map: RGB = (x right, y up, z toward the viewer)",
    "depth_anything": "the registered depth estimator `depth_anything` (Depth Anything small): near = bright",
    "depth_zoe": "the registered depth estimator `depth_zoe` (ZoeDepth, metric, inverted): near = bright",
}

ANNOTATOR_MODULES: dict[str, str] = {
    **dict.fromkeys(("hed", "hed_safe", "softedge_hed", "softedge_hedsafe", "scribble_hed", "scribble_hedsafe"), "hed"),
    **dict.fromkeys(("pidinet", "pidinet_safe", "softedge_pidinet", "softedge_pidsafe"), "pidinet"),
    **dict.fromkeys(("scribble_pidinet", "scribble_pidsafe", "pidinet_scribble"), "pidinet"),
    **dict.fromkeys(("lineart", "lineart_realistic", "lineart_coarse", "lineart_anime"), "lineart"),
    **dict.fromkeys(("openpose", "openpose_hand", "openpose_face", "openpose_faceonly", "openpose_full"), "openpose"),
}
"""Processors that run a ControlNet 1.1 annotator network: the module of worker.engine.control that
implements each (its PROCESSORS say the conventions), loading its files from the `annotators` asset."""

ANNOTATOR_FILES: dict[str, str] = {
    "hed": "ControlNetHED.pth",
    "pidinet": "table5_pidinet.pth",
    "lineart": "sk_model.pth, sk_model2.pth and netG.pth",
    "openpose": "body_pose_model.pth, hand_pose_model.pth and facenet.pth",
}

IMPLEMENTED: dict[str, str] = {
    **PURE,
    **DEPTH,
    **{
        name: f"the {module} network of the `{ANNOTATORS}` asset ({ANNOTATOR_FILES[module]})"
        for name, module in ANNOTATOR_MODULES.items()
    },
}
"""Processors that run here, each with its convention."""

MAPPED: dict[str, str] = {
    "depth_midas": "depth",
    "depth_leres": "depth",
    "depth_leres++": "depth",
    "normal_midas": "normal_map",
    "scribble": "scribble_xdog",
    "threshold": "binary",
}
"""Names run by another processor: `depth_midas` is what `depth` runs; LeReS (no transformers model) runs
the `depth` estimator instead (the result's meta shows `cn_processor: depth`); the rest are aliases of
the same algorithm."""

UNAVAILABLE: tuple[str, ...] = (
    *("te_hed", "teed", "softedge_teed", "pidinet_sketch", "dw_openpose_full", "dwpose", "animal_openpose"),
    *("mediapipe_face", "densepose", "densepose_parula", "lineart_anime_denoise"),
    *("normal_bae", "normal_dsine", "segmentation", "oneformer_coco", "oneformer_ade20k", "anime_face_segment"),
    *("clip_vision", "revision_clipvision", "revision_ignore_prompt", "reference_only", "reference_adain"),
    *("reference_adain+attn", "inpaint", "inpaint_only", "inpaint_only+lama", "tile_resample", "tile_colorfix"),
    *("tile_colorfix+sharp", "recolor_luminance", "recolor_intensity"),
)
"""Names other services accept that need a network not implemented here (TEED, DWPose, MediaPipe's face
mesh, DensePose, BAE and DSINE normals, the segmentation models, the denoising anime line art) or another
pipeline (reference, IP-Adapter, inpaint, tile): they fall back to the default processor, listed in
`meta.not_applied`."""

DEFAULT_PROCESSOR: dict[str, str] = {
    "Canny": "canny",
    "Depth": "depth",
    "SoftEdge": "softedge_pidinet",
    "Openpose": "openpose",
}
"""cn_processor when a request names none or one that cannot run: the processor each built-in ControlNet
was trained on (SoftEdge's DexiNed edges: PiDiNet's are the nearest here); `none` for any other cn_model."""


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
