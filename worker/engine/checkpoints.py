"""Where a model's weights are on this worker, made so before it is loaded: local checks, downloads, hashes.

`local_weights(spec, policy)` runs in the resident cache's load (worker.engine.pipelines),
before torch is imported for nothing:

- a local source must exist: a directory (the diffusers layout) or a single-file checkpoint
  (storage.contract.sources); a pickled one only when INPAINT_ALLOW_PICKLE_CHECKPOINTS is on;
- a single file with a registered `sha256` is hashed and compared before it is used;
- an http(s) URL is downloaded once into INPAINT_MODEL_CACHE_DIR and the spec returned points
  at the cached file. The body is streamed (storage.egress.checkpoints.download: public
  addresses only, INPAINT_MAX_CHECKPOINT_BYTES, one deadline) into a temporary file beside
  its final name, hashed as it arrives, checked (the registered sha256; a safetensors header,
  or a pickle only when allowed), and only then renamed into place: a checkpoint in the cache
  is always whole and verified. A lock file per URL serialises the processes of one machine
  that load it at once; the later ones wait, then find the file.

Cache names are the first 32 hex digits of sha256(URL) with `.safetensors` (or `.ckpt`), and
a `.json` record of the URL, the file's SHA-256 and its size: a spec whose sha256 differs from
the record's downloads the file again. Messages never show a local path or the URL (it may
carry a token). Nothing here imports torch: `checkpoint_present` runs on the heartbeat thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

from storage.contract.sources import (
    SAFETENSORS_SUFFIX,
    is_local_path,
    is_pickle,
    is_single_file,
    is_url,
    pickle_refusal,
)
from storage.contract.specs import ModelSpec
from storage.egress.checkpoints import CheckpointTooLarge, download
from storage.egress.fetch import FetchError, FetchPolicy
from storage.errors import JobFailure
from storage.settings import Settings

log = logging.getLogger(__name__)

PICKLE_SUFFIX = ".ckpt"
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class CheckpointPolicy:
    cache_dir: Path
    max_bytes: int
    timeout: float
    allow_loopback: bool = False
    allow_pickle: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckpointPolicy:
        return cls(
            cache_dir=settings.resolved_model_cache_dir,
            max_bytes=settings.max_checkpoint_bytes,
            timeout=settings.checkpoint_fetch_timeout_seconds,
            allow_loopback=settings.allow_loopback_urls,
            allow_pickle=settings.allow_pickle_checkpoints,
        )


def describe_model(spec: ModelSpec) -> str:
    """How a job's message names the model whose weights these are."""
    what = f"model {spec.slug!r}"
    return f"base_model {spec.base_model!r} of {what}" if spec.base_model else what


def unavailable(what: str, reason: str) -> JobFailure:
    return JobFailure("model_unavailable", f"{what} could not be loaded: {reason}")


OFFLINE_ERRORS = (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError, socket.gaierror)


def hub_unreachable(exc: BaseException) -> bool:
    """Whether a load failed because the Hugging Face hub did not answer (or offline mode is on), by
    its chain of causes: diffusers wraps these in an OSError."""
    seen: BaseException | None = exc
    while seen is not None:
        transport = any(c.__name__ == "TransportError" for c in type(seen).__mro__)  # httpx, and hub's own copy
        if isinstance(seen, OFFLINE_ERRORS + (httpx.TransportError,)) or transport:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def hub_remedy(source: str, register: str = "inpaint-admin models register") -> str:
    """What to do about weights on the hub id `source` that are neither in the worker's cache nor reachable."""
    return (
        f"download them into the worker's Hugging Face cache (hf download {source}), or register a "
        f"local directory or .safetensors file with {register}"
    )


def offline_message(what: str, source: str) -> str:
    """What to do when `source` (a hub id) is neither in the worker's Hugging Face cache nor reachable."""
    register = "inpaint-admin models register" if what.startswith("model ") else "inpaint-admin assets register"
    return (
        f"{what} could not be loaded: its weights are not on this worker and the Hugging Face hub could not be "
        f"reached: {hub_remedy(source, register)}"
    )


def offline_config_message(what: str, config: str | None) -> str:
    """What to do when a single-file checkpoint's diffusers config is neither cached nor reachable."""
    hub_id = config is not None and not is_local_path(config)
    which = (
        f"its config {config!r}" if hub_id else "its local config" if config else "the config diffusers infers for it"
    )
    return (
        f"{what} could not be loaded: its checkpoint is described by {which}, which is not on this worker, and "
        "the Hugging Face hub could not be reached: register it with `config` naming a local diffusers "
        "directory (model_index.json, the component configs and tokenizers)"
        + (f", or download it into the worker's Hugging Face cache (hf download {config})" if hub_id else "")
    )


def local_weights(spec: ModelSpec, policy: CheckpointPolicy | None) -> ModelSpec:
    """`spec` with weights on this machine (the module docstring); raises JobFailure saying why not.
    A hub id is left to diffusers. `policy` None: no URL is downloaded and no pickle is loaded."""
    what = describe_model(spec)
    allow_pickle = policy is not None and policy.allow_pickle
    if spec.config and is_local_path(spec.config) and not Path(spec.config).is_dir():
        raise unavailable(what, "the local config directory it was registered with does not exist")
    if is_url(spec.source):
        if is_pickle(spec.source) and not allow_pickle:
            raise unavailable(what, "its checkpoint URL " + pickle_refusal(spec.source))
        if policy is None:
            raise unavailable(what, "this worker has no model cache to download its checkpoint URL into")
        return spec.model_copy(update={"source": str(fetch_checkpoint(spec.source, spec.sha256, policy, what))})
    if not is_local_path(spec.source):
        return spec
    path = Path(spec.source)
    if path.is_dir():
        return spec
    if not path.is_file():
        raise unavailable(what, "its local path does not exist")
    if not is_single_file(spec.source):
        raise unavailable(what, "its local path is a file, but not a .safetensors checkpoint")
    if is_pickle(spec.source) and not allow_pickle:
        raise unavailable(what, "its local file " + pickle_refusal(spec.source))
    if spec.sha256:
        check_sha256(file_sha256(path), spec.sha256, what)
    return spec


def check_sha256(got: str, expected: str, what: str) -> None:
    if got != expected.lower():
        raise unavailable(what, f"its checkpoint's SHA-256 is {got}, but {expected.lower()} was registered")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def cached_file(url: str, cache_dir: Path, *, allow_pickle: bool) -> Path | None:
    """The complete, verified download of `url` in the cache, if there is one."""
    for suffix in (SAFETENSORS_SUFFIX, PICKLE_SUFFIX) if allow_pickle else (SAFETENSORS_SUFFIX,):
        path = cache_dir / f"{cache_key(url)}{suffix}"
        if path.is_file():
            return path
    return None


def checkpoint_present(source: str, settings: Settings) -> bool:
    """Whether a single-file source is on this machine, as a worker with `settings` would load it: a
    local checkpoint file, or a URL already in the model cache. False for hub ids and directories."""
    allow_pickle = settings.allow_pickle_checkpoints
    if is_url(source):
        return cached_file(source, settings.resolved_model_cache_dir, allow_pickle=allow_pickle) is not None
    path_ok = is_single_file(source) and Path(source).is_file()
    return path_ok and (allow_pickle or not is_pickle(source))


def fetch_checkpoint(url: str, expected: str | None, policy: CheckpointPolicy, what: str) -> Path:
    """The cached file of `url`, downloaded first unless a verified copy (with `expected` as its
    SHA-256, when given) is there."""
    key = cache_key(url)
    try:
        policy.cache_dir.mkdir(parents=True, exist_ok=True)
        found = reusable(url, expected, policy)
        if found is not None:
            return found
        with exclusive(policy.cache_dir / f"{key}.lock"):
            found = reusable(url, expected, policy)  # another process may have fetched it meanwhile
            if found is not None:
                return found
            for stale in policy.cache_dir.glob(f".{key}.*.part"):  # left by a process that died downloading
                stale.unlink(missing_ok=True)
            return download_to_cache(url, expected, policy, what)
    except OSError as exc:
        log.error("model cache %s: %s", policy.cache_dir, exc)
        raise unavailable(what, f"the worker could not write its model cache ({exc.strerror})") from None


def reusable(url: str, expected: str | None, policy: CheckpointPolicy) -> Path | None:
    path = cached_file(url, policy.cache_dir, allow_pickle=policy.allow_pickle)
    if path is None or expected is None:
        return path
    record = read_record(policy.cache_dir / f"{cache_key(url)}.json")
    return path if record.get("sha256") == expected.lower() else None


def read_record(path: Path) -> dict[str, object]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """An advisory lock on `lock_path`, held by one process of this machine at a time."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download_to_cache(url: str, expected: str | None, policy: CheckpointPolicy, what: str) -> Path:
    """Download, verify and rename into place (the module docstring); holds the URL's lock."""
    key = cache_key(url)
    part = policy.cache_dir / f".{key}.{os.getpid()}.{secrets.token_hex(4)}.part"
    digest = hashlib.sha256()
    head = bytearray()
    fetch = FetchPolicy(timeout=policy.timeout, max_bytes=policy.max_bytes, allow_loopback=policy.allow_loopback)
    try:
        with part.open("wb") as out:

            def write(chunk: bytes) -> None:
                digest.update(chunk)
                if len(head) < 16:
                    head.extend(chunk[: 16 - len(head)])
                out.write(chunk)

            try:
                size = download(url, fetch, write)
            except CheckpointTooLarge as exc:
                raise JobFailure(
                    "model_unavailable", f"{what} could not be downloaded: {exc.message} (INPAINT_MAX_CHECKPOINT_BYTES)"
                ) from None
            except FetchError as exc:
                raise JobFailure("model_unavailable", f"{what} could not be downloaded: {exc.message}") from None
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if expected is not None:
            check_sha256(got, expected, what)
        suffix = SAFETENSORS_SUFFIX if is_safetensors(bytes(head), size) else PICKLE_SUFFIX
        if suffix == PICKLE_SUFFIX and not policy.allow_pickle:
            raise unavailable(
                what,
                "its checkpoint URL served a file that is not safetensors; pickled checkpoints can run code when "
                "loaded and are loaded only with INPAINT_ALLOW_PICKLE_CHECKPOINTS",
            )
        final = policy.cache_dir / f"{key}{suffix}"
        os.replace(part, final)
        write_record(policy.cache_dir / f"{key}.json", {"url": url, "sha256": got, "bytes": size})
        log.info("downloaded the checkpoint of %s (%d bytes, sha256 %s)", what, size, got)
        return final
    finally:
        part.unlink(missing_ok=True)


def is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte little-endian header length that fits the file, then a JSON object."""
    if len(head) < 9:
        return False
    header = int.from_bytes(head[:8], "little")
    return 2 <= header <= size - 8 and head[8:9] == b"{"


def write_record(path: Path, record: dict[str, object]) -> None:
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    draft.write_text(json.dumps(record))
    os.replace(draft, path)
