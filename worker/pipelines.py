"""Resident pipelines: each model is loaded once per worker process and kept.

Families map to loaders in a table; torch and diffusers are imported only when a
diffusers family is first loaded, so a worker that only runs maintenance or
`erase` never imports them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.errors import JobFailure
from storage.registry import ModelSpec
from worker.inference import Inpainter

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, str], Inpainter]


def _load_erase(spec: ModelSpec, device: str) -> Inpainter:
    from worker.erase import EraseInpainter

    return EraseInpainter()


def _load_sd15(spec: ModelSpec, device: str) -> Inpainter:
    from worker.diffusion import load_sd15, resolve_device

    return load_sd15(spec, resolve_device(device))


LOADERS: dict[str, Loader] = {"erase": _load_erase, "sd15": _load_sd15}


def check_local_source(spec: ModelSpec) -> None:
    """A source that is a path must be a directory: fail fast, before importing torch for nothing."""
    if spec.source and (Path(spec.source).is_absolute() or spec.source.startswith(".")) \
            and not Path(spec.source).is_dir():
        raise JobFailure("model_unavailable",
                         f"model {spec.slug!r} could not be loaded: its local directory does not exist")


class PipelineCache:
    """Loaded inpainters by (slug, family, source). A re-registered slug loads afresh."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._loaded: dict[tuple[str, str, str], Inpainter] = {}
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> Inpainter:
        key = (spec.slug, spec.family, spec.source)
        with self._lock:
            if key not in self._loaded:
                check_local_source(spec)
                started = time.perf_counter()
                self._loaded[key] = LOADERS[spec.family](spec, self.device)
                log.info("loaded model %s (%s) in %.1f s", spec.slug, spec.family, time.perf_counter() - started)
            return self._loaded[key]

    def resident(self) -> list[dict[str, Any]]:
        return [{"slug": s, "family": f} for (s, f, _src) in self._loaded]
