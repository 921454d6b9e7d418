"""Resident models: each is loaded once per worker process and kept, up to a memory budget.

Families map to loaders in a table; torch and diffusers are imported only when a
diffusers family is first loaded, so a worker that only runs maintenance or
`erase` never imports them. The cache is a least-recently-used list keyed by
(kind, source): SDXL inpainting and SDXL ControlNet slugs with the same weights
share one pipeline, and ControlNets, VAEs, depth estimators and safety checkers
are entries of their own. When the entries' bytes exceed the budget, the least
recently used ones are dropped (a job still holding one keeps it until it ends).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.contract.specs import ModelSpec
from storage.errors import JobFailure
from worker.engine.availability import FailedLoads
from worker.engine.checkpoints import CheckpointPolicy, local_weights
from worker.engine.compiling import CompileOptions
from worker.engine.devices import memory_budget
from worker.engine.erase import EraseInpainter
from worker.engine.types import Inpainter

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, str, CompileOptions | None], Inpainter]


def _load_erase(spec: ModelSpec, device: str, compile_options: CompileOptions | None) -> Inpainter:
    return EraseInpainter()


def _load_sd15(spec: ModelSpec, device: str, compile_options: CompileOptions | None) -> Inpainter:
    from worker.engine.diffusion import load_sd15, resolve_device  # torch, at the first diffusers load

    return load_sd15(spec, resolve_device(device), compile_options)


def _load_sdxl(spec: ModelSpec, device: str, compile_options: CompileOptions | None) -> Inpainter:
    # torch and diffusers, at the first diffusers load (the module docstring)
    from worker.engine.diffusion import resolve_device
    from worker.engine.sdxl import load_sdxl

    return load_sdxl(spec, resolve_device(device), compile_options)


# family -> (cache kind, loader). sdxl-controlnet shares the sdxl pipeline; the ControlNet is per job.
LOADERS: dict[str, tuple[str, Loader]] = {
    "erase": ("erase", _load_erase),
    "sd15": ("sd15", _load_sd15),
    "sdxl": ("sdxl", _load_sdxl),
    "sdxl-controlnet": ("sdxl", _load_sdxl),
}


@dataclass
class Resident:
    value: Any
    nbytes: int
    loaded_at: float


def measure_bytes(value: Any) -> int:
    """Bytes of the torch parameters and buffers reachable from `value` (0 when torch is not loaded)."""
    if "torch" not in sys.modules:
        return 0
    import torch  # already loaded (checked above): this import loads nothing

    modules: list[Any] = []
    for candidate in (value, getattr(value, "pipe", None), getattr(value, "model", None)):
        if isinstance(candidate, torch.nn.Module):
            modules.append(candidate)
        components = getattr(candidate, "components", None)
        if isinstance(components, dict):
            modules.extend(c for c in components.values() if isinstance(c, torch.nn.Module))
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def release_memory() -> None:
    gc.collect()
    if "torch" in sys.modules:
        import torch  # already loaded (checked above): this import loads nothing

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class PipelineCache:
    """Loaded models by (kind, source), least recently used first. Thread-safe.

    Loads are serialised by one lock; the table itself has its own short lock, so
    `resident()` (the heartbeat) never waits for a load to finish.
    """

    def __init__(
        self,
        device: str,
        budget_gb: float | None = None,
        *,
        compile_options: CompileOptions | None = None,
        checkpoints: CheckpointPolicy | None = None,
    ) -> None:
        """budget_gb: None is BUDGET_FRACTION of the device's memory, worked out at the first load.
        compile_options: None runs every pipeline eager (worker.engine.compiling).
        checkpoints: where checkpoint URLs are downloaded to, and whether pickles load
        (worker.engine.checkpoints); None: no URL is downloaded and no pickle is loaded."""
        self.device = device
        self.budget_gb = budget_gb
        self.compile_options = compile_options
        self.checkpoints = checkpoints
        self._budget: int | None = None
        self._entries: OrderedDict[tuple[str, str], Resident] = OrderedDict()
        self._loading = threading.Lock()
        self._table = threading.Lock()
        self.failed = FailedLoads()
        """Sources whose last load failed: the heartbeat reports them (worker.engine.availability)."""

    def get(self, spec: ModelSpec) -> Inpainter:
        """The inpainter for this spec's family and weights, loaded on first use. A checkpoint URL is
        downloaded first (worker.engine.checkpoints); the entry stays keyed by the URL."""
        kind, loader = LOADERS[spec.family]

        def load() -> Inpainter:
            # Checks a local source, or downloads a URL, before torch is imported for nothing.
            return loader(local_weights(spec, self.checkpoints), self.device, self.compile_options)

        inpainter: Inpainter = self.component(kind, spec.source, load, label=spec.slug)
        return inpainter

    def component(self, kind: str, source: str, load: Callable[[], Any], *, label: str = "") -> Any:
        """The entry (kind, source), made by `load()` if absent; marks it most recently used."""
        key = (kind, source)
        with self._loading:
            with self._table:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    return entry.value
            started = time.perf_counter()
            try:
                value = load()
            except JobFailure as failure:
                if failure.code == "model_unavailable":
                    self.failed.record(source, failure.message)
                raise
            self.failed.forget(source)
            entry = Resident(value=value, nbytes=measure_bytes(value), loaded_at=time.time())
            with self._table:
                self._entries[key] = entry
                dropped = self._drop_over_budget(keep=key)
            log.info(
                "loaded %s %s (%.1f MB) in %.1f s",
                kind,
                label or source,
                entry.nbytes / 1e6,
                time.perf_counter() - started,
            )
        if dropped:
            release_memory()
        return value

    def budget_bytes(self) -> int | None:
        if self._budget is None:
            self._budget = memory_budget(self.device, self.budget_gb)
        return self._budget

    def _drop_over_budget(self, *, keep: tuple[str, str]) -> int:
        """Drop least recently used entries (never `keep`) until the total fits. Holds the table lock."""
        budget = self.budget_bytes()
        dropped = 0
        while budget is not None and sum(e.nbytes for e in self._entries.values()) > budget:
            victim = next((k for k in self._entries if k != keep), None)
            if victim is None:
                break
            gone = self._entries.pop(victim)
            dropped += 1
            log.info("evicted %s %s (%.1f MB): over the memory budget", *victim, gone.nbytes / 1e6)
        return dropped

    def clear(self) -> int:
        """Drop every entry; returns how many were dropped."""
        return self._drop(lambda key: True)

    def evict_source(self, source: str) -> int:
        """Drop the entries loaded from `source`; returns how many."""
        return self._drop(lambda key: key[1] == source)

    def _drop(self, chosen: Callable[[tuple[str, str]], bool]) -> int:
        with self._table:
            keys = [k for k in self._entries if chosen(k)]
            for key in keys:
                del self._entries[key]
        if keys:
            release_memory()
        return len(keys)

    def resident(self) -> list[dict[str, Any]]:
        """What is in memory, least recently used first: [{kind, source, bytes}]."""
        with self._table:
            return [{"kind": k, "source": s, "bytes": e.nbytes} for (k, s), e in self._entries.items()]
