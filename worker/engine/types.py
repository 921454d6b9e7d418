"""The engine's shared vocabulary: what a job's models are called, what they load into, and the
interface every inpainter has. Imports nothing of the worker.

mask: mode L, 255 = repaint, 0 = keep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from storage.contract.params import JobParams
from storage.contract.specs import ModelSpec

StepCallback = Callable[[int, int], None]
"""on_step(step, total): called after each denoising step; may raise to stop the job."""


@dataclass(frozen=True)
class NamedSource:
    """A registered name, where its weights are, and the options it was registered with."""

    name: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class AnnotatorSource:
    """An annotator network (the module worker.engine.control.<module>) and the registered files it loads."""

    module: str
    files: NamedSource


@dataclass(frozen=True)
class JobSources:
    """Every named thing a job uses, resolved from the registry when the job was claimed."""

    spec: ModelSpec  # with `source` set to the weights actually used (the base model's, for SDXL)
    vae: NamedSource | None = None
    loras: tuple[NamedSource, ...] = ()
    embeddings: tuple[NamedSource, ...] = ()
    controlnet: NamedSource | None = None
    depth: NamedSource | None = None
    annotator: AnnotatorSource | None = None
    safety: NamedSource | None = None


@dataclass
class JobComponents:
    """Loaded models for one job (None: not used), and the adapter files to apply."""

    vae: Any = None
    controlnet: Any = None
    depth: Any = None
    annotator: Any = None
    loras: tuple[NamedSource, ...] = ()
    embeddings: tuple[NamedSource, ...] = ()


class Inpainter(Protocol):
    def __call__(
        self,
        params: JobParams,
        image: Image.Image,
        mask: Image.Image,
        *,
        on_step: StepCallback,
        components: JobComponents | None = None,
    ) -> list[Image.Image]:
        """`params.samples` images of the input's size; image RGB, mask L (0/255), same size."""
        ...
