"""Which weights this worker can load now, without trying: the fleet's answer to "can this model be served?".

Each inference worker reports, with its heartbeat, a state for the weights of every
registered model and base model (storage.database.fleet), and the API refuses a submit
that no online worker can serve (api.serving). A state is one of:

- `loaded`: in this worker's memory;
- `present`: on this machine (a local directory or file, or the Hugging Face cache);
- `download`: not here, but this worker fetches it at the first job (a hub id while the hub
  answers, or a checkpoint URL);
- `missing`: not here and not reachable; `reason` says what to do;
- `failed`: the last load from this source failed (the job's error), retried after
  `FAILED_LOAD_SECONDS` or after an admin `load` or `clear_cache`.

Only the first three can serve a job (storage.database.fleet.SERVABLE_STATES). Nothing here
imports torch: it runs on the heartbeat thread, also while a job holds the device.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from huggingface_hub import try_to_load_from_cache

from storage.contract.sources import is_local_path, is_single_file, is_url
from worker.engine.checkpoints import hub_remedy

log = logging.getLogger(__name__)

FAILED_LOAD_SECONDS = 300.0
HUB_PROBE_SECONDS = 300.0
"""How long an answer of the hub (reachable or not) is trusted."""
HUB_PROBE_TIMEOUT = 3.0
WEIGHT_SUFFIXES = (".safetensors", ".bin")

MISSING_HUB = "its weights are not on this worker and the Hugging Face hub cannot be reached: {remedy}"
MISSING_LOCAL = "its weights are not on this worker: the registered local path does not exist there"


@dataclass(frozen=True)
class WeightsState:
    state: str
    reason: str | None = None

    def as_json(self) -> dict[str, str]:
        return {"state": self.state} | ({"reason": self.reason} if self.reason else {})


def hub_weights_cached(repo_id: str) -> bool:
    """Whether a diffusers pipeline repo is in the Hugging Face cache, its UNet weights included."""
    try:
        index = try_to_load_from_cache(repo_id, "model_index.json")
    except ValueError:  # not a valid repo id
        return False
    if not isinstance(index, str):
        return False
    unet = Path(index).parent / "unet"
    return unet.is_dir() and any(p.name.endswith(WEIGHT_SUFFIXES) for p in unet.iterdir())


def local_weights_present(path: Path) -> bool:
    """A diffusers folder (model_index.json or config.json) or a single weights file."""
    if path.is_file():
        return path.name.endswith(WEIGHT_SUFFIXES)
    return (path / "model_index.json").is_file() or (path / "config.json").is_file()


class HubProbe:
    """Whether the Hugging Face hub answers, asked at most every HUB_PROBE_SECONDS."""

    def __init__(self, *, endpoint: str | None = None, ttl: float = HUB_PROBE_SECONDS) -> None:
        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        self.ttl = ttl
        self._answer: tuple[bool, float] | None = None

    def reachable(self) -> bool:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            return False
        now = time.monotonic()
        if self._answer is None or now - self._answer[1] > self.ttl:
            try:
                httpx.head(f"{self.endpoint}/api/models", timeout=HUB_PROBE_TIMEOUT)
                answer = True
            except httpx.HTTPError:
                answer = False
            if self._answer is None or self._answer[0] != answer:
                log.info("the Hugging Face hub is %s", "reachable" if answer else "unreachable")
            self._answer = (answer, now)
        return self._answer[0]


class FailedLoads:
    """Sources whose last load failed, with the failure's message; thread-safe."""

    def __init__(self, *, ttl: float = FAILED_LOAD_SECONDS) -> None:
        self.ttl = ttl
        self._failed: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._changed = False

    def record(self, source: str, reason: str) -> None:
        """Remember a load of `source` that failed with the job error `reason`. The error names the
        model whose job tried ("base_model 'X' of model 'y' could not be loaded: ..."); the state is
        the weights', which other models may share, so that name is dropped ("it could not be ...")."""
        named, found, rest = reason.partition(" could not be loaded")
        if found and named:
            reason = f"it could not be loaded{rest}"
        with self._lock:
            self._failed[source] = (reason, time.monotonic())
            self._changed = True

    def changed(self) -> bool:
        """Whether a failure was recorded since the last call."""
        with self._lock:
            changed, self._changed = self._changed, False
        return changed

    def forget(self, source: str | None = None) -> None:
        """Forget one source's failure, or every one (None)."""
        with self._lock:
            if source is None:
                self._failed.clear()
            else:
                self._failed.pop(source, None)

    def reason(self, source: str) -> str | None:
        with self._lock:
            entry = self._failed.get(source)
            if entry is not None and time.monotonic() - entry[1] > self.ttl:
                del self._failed[source]
                entry = None
        return entry[0] if entry else None


def weights_state(
    source: str,
    *,
    resident: frozenset[str],
    failed: FailedLoads,
    hub: HubProbe,
    checkpoint_present: Callable[[str], bool] | None = None,
) -> WeightsState:
    """The state of the weights at `source` on this worker (the module docstring)."""
    if source in resident:
        return WeightsState("loaded")
    reason = failed.reason(source)
    if reason is not None:
        return WeightsState("failed", reason)
    if is_url(source):
        return WeightsState("present" if checkpoint_present and checkpoint_present(source) else "download")
    if is_local_path(source) and is_single_file(source) and checkpoint_present is not None:
        present = checkpoint_present(source)  # a pickle the settings refuse is not loadable
        return WeightsState("present") if present else WeightsState("missing", MISSING_LOCAL)
    if is_local_path(source):
        present = local_weights_present(Path(source))
        return WeightsState("present") if present else WeightsState("missing", MISSING_LOCAL)
    if hub_weights_cached(source):
        return WeightsState("present")
    if hub.reachable():
        return WeightsState("download")
    return WeightsState("missing", MISSING_HUB.format(remedy=hub_remedy(source)))
