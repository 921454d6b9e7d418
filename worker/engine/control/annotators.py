"""Loading the ControlNet 1.1 annotator networks (HED, PiDiNet, line art, OpenPose) from the files of
the registered `annotators` asset: a local directory, or a Hugging Face repository (lllyasviel/Annotators
by default) read through the hub's cache under the same offline rules as every model.

Each network module (worker.engine.control.<module>) names the files it loads (`WEIGHTS`), builds
itself from their state dicts (`from_states`) and is called as `annotator(image, processor)`.
Files are read with `torch.load(weights_only=True)`: tensors only, never pickled code.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from PIL import Image

from storage.contract.sources import is_local_path
from storage.errors import JobFailure
from worker.engine.checkpoints import hub_unreachable, offline_message
from worker.engine.control import hed, lineart, openpose, pidinet
from worker.engine.types import AnnotatorSource, NamedSource

MODULES: dict[str, ModuleType] = {"hed": hed, "pidinet": pidinet, "lineart": lineart, "openpose": openpose}
"""The annotator modules by the name storage.contract.processors.ANNOTATOR_MODULES gives them."""


class LoadedAnnotator:
    """An annotator network with its torch modules gathered in `model` (the resident cache weighs it)."""

    def __init__(self, annotator: Any) -> None:
        self.annotator = annotator
        self.model = torch.nn.ModuleList(modules_of(annotator))

    def __call__(self, image: Image.Image, processor: str) -> Image.Image:
        control: Image.Image = self.annotator(image, processor)
        return control


def modules_of(value: Any) -> list[torch.nn.Module]:
    """The torch modules among `value`'s attributes (and the values of its dict attributes)."""
    found: list[torch.nn.Module] = []
    for attribute in vars(value).values():
        candidates = attribute.values() if isinstance(attribute, dict) else [attribute]
        found.extend(c for c in candidates if isinstance(c, torch.nn.Module))
    return found


def weights_file(files: NamedSource, name: str) -> Path:
    """The path of file `name` of the asset: in its directory, or downloaded to (or found in) the hub cache."""
    what = f"annotators {files.name!r}"
    if is_local_path(files.source):
        path = Path(files.source) / name
        if not path.is_file():
            raise JobFailure("model_unavailable", f"{what} could not be loaded: its directory has no {name}")
        return path
    try:
        return Path(hf_hub_download(files.source, name))
    except Exception as exc:  # noqa: BLE001 - every hub failure is reported as the weights being unavailable
        if hub_unreachable(exc):
            raise JobFailure("model_unavailable", offline_message(what, files.source)) from None
        raise JobFailure("model_unavailable", f"{what} could not be loaded: {files.source} has no {name}") from None


def load_annotator(source: AnnotatorSource, device: str | torch.device) -> LoadedAnnotator:
    """The annotator network of `source.module`, its files read from `source.files`, on `device`."""
    module = MODULES[source.module]
    states = {
        name: torch.load(weights_file(source.files, name), map_location="cpu", weights_only=True)
        for name in module.WEIGHTS
    }
    try:
        return LoadedAnnotator(module.from_states(states, device))
    except ValueError as exc:
        message = f"annotators {source.files.name!r} could not be loaded: {exc}"
        raise JobFailure("model_unavailable", message) from None
