"""What a weights source names, read from the string alone (no I/O).

- a Hugging Face hub id (`org/name`): a diffusers repository;
- a local path (absolute, or starting with `.`): a diffusers directory, or a single-file
  checkpoint when it ends in `.safetensors` (or in a pickle suffix, below);
- an http(s) URL: a single-file checkpoint the worker downloads (never the API).

Single-file checkpoints are the layout community models ship in (Civitai, A1111): one file
holding the UNet, the VAE and the text encoders under the original Stable Diffusion keys.
A pickled one (`.ckpt`, `.pt`, `.pth`, `.bin`) can run code when it is loaded: it is refused
unless the operator allows it (INPAINT_ALLOW_PICKLE_CHECKPOINTS), at registration and again
by the worker. The API, the admin CLI and the worker apply these rules alike.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PICKLE_REFUSED = (
    "is a pickled checkpoint ({suffix}), which can run code when it is loaded: convert it to .safetensors, "
    "or let the workers load pickles with INPAINT_ALLOW_PICKLE_CHECKPOINTS"
)
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"


def is_url(source: str) -> bool:
    return source[:8].lower().startswith(("http://", "https://"))


def is_local_path(source: str) -> bool:
    return source.startswith(("/", "."))


def file_suffix(source: str) -> str:
    """The suffix of the file a source names, lower case: of a URL's path, or of a local path; '' for none."""
    path = urlsplit(source).path if is_url(source) else source
    return PurePosixPath(path).suffix.lower()


def is_single_file(source: str) -> bool:
    """A URL (always a single-file checkpoint) or a local path ending in a checkpoint suffix."""
    return is_url(source) or (is_local_path(source) and file_suffix(source) in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES))


def is_pickle(source: str) -> bool:
    """A single-file source whose name says it is pickled (a URL without a suffix is known only once fetched)."""
    return is_single_file(source) and file_suffix(source) in PICKLE_SUFFIXES


def pickle_refusal(source: str) -> str:
    return PICKLE_REFUSED.format(suffix=file_suffix(source) or "not safetensors")
