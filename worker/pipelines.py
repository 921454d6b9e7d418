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

from storage.registry import ModelSpec
from worker.devices import memory_budget
from worker.inference import Inpainter

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, str], Inpainter]


def _load_erase(spec: ModelSpec, device: str) -> Inpainter:
    from worker.erase import EraseInpainter

    return EraseInpainter()


def _load_sd15(spec: ModelSpec, device: str) -> Inpainter:
    from worker.diffusion import load_sd15, resolve_device

    return load_sd15(spec, resolve_device(device))


def _load_sdxl(spec: ModelSpec, device: str) -> Inpainter:
    from worker.diffusion import resolve_device
    from worker.sdxl import load_sdxl

    return load_sdxl(spec, resolve_device(device))


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
    import torch

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
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class PipelineCache:
    """Loaded models by (kind, source), least recently used first. Thread-safe; loads under the lock."""

    def __init__(self, device: str, budget_gb: float | None = None) -> None:
        """budget_gb: None is BUDGET_FRACTION of the device's memory, worked out at the first load."""
        self.device = device
        self.budget_gb = budget_gb
        self._budget: int | None = None
        self._entries: OrderedDict[tuple[str, str], Resident] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, spec: ModelSpec) -> Inpainter:
        """The inpainter for this spec's family and weights, loaded on first use."""
        kind, loader = LOADERS[spec.family]
        inpainter: Inpainter = self.component(
            kind, spec.source, lambda: loader(spec, self.device), label=spec.slug
        )
        return inpainter

    def component(self, kind: str, source: str, load: Callable[[], Any], *, label: str = "") -> Any:
        """The entry (kind, source), made by `load()` if absent; marks it most recently used."""
        key = (kind, source)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                started = time.perf_counter()
                value = load()
                entry = Resident(value=value, nbytes=measure_bytes(value), loaded_at=time.time())
                self._entries[key] = entry
                log.info(
                    "loaded %s %s (%.1f MB) in %.1f s",
                    kind,
                    label or source,
                    entry.nbytes / 1e6,
                    time.perf_counter() - started,
                )
                self._evict_over_budget(keep=key)
            self._entries.move_to_end(key)
            return entry.value

    def budget_bytes(self) -> int | None:
        if self._budget is None:
            self._budget = memory_budget(self.device, self.budget_gb)
        return self._budget

    def _evict_over_budget(self, *, keep: tuple[str, str]) -> None:
        budget = self.budget_bytes()
        if budget is None:
            return
        while self.total_bytes() > budget:
            victim = next((k for k in self._entries if k != keep), None)
            if victim is None:
                return
            dropped = self._entries.pop(victim)
            log.info("evicted %s %s (%.1f MB): over the memory budget", *victim, dropped.nbytes / 1e6)
        release_memory()

    def total_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> int:
        """Drop every entry; returns how many were dropped."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
        release_memory()
        return count

    def evict_source(self, source: str) -> int:
        with self._lock:
            keys = [k for k in self._entries if k[1] == source]
            for key in keys:
                del self._entries[key]
        if keys:
            release_memory()
        return len(keys)

    def resident(self) -> list[dict[str, Any]]:
        """What is in memory, least recently used first: [{kind, source, bytes}]."""
        with self._lock:
            return [{"kind": k, "source": s, "bytes": e.nbytes} for (k, s), e in self._entries.items()]
