"""Checkpoint sources: checked when a model is registered, downloaded by the worker that loads it.

`check_weights_source` is what `load_model` (api.routes.enterprise) and `inpaint-admin`
apply to a registration, without fetching anything (the API tier never downloads
gigabytes): a pickled checkpoint is refused unless INPAINT_ALLOW_PICKLE_CHECKPOINTS is on; a
URL is accepted only for model checkpoints (the diffusion families and `base_model`), and
its host must resolve to public addresses, as an image URL's must (loopback too with
INPAINT_ALLOW_LOOPBACK_URLS).

`download` streams a checkpoint URL into a sink, for worker.engine.checkpoints. Unlike
`fetch` it follows redirects (the Hugging Face hub and Civitai answer a download with one),
each hop a new request under the same rules (public addresses only, no credentials in the
URL), all hops within one deadline, the body within the byte cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import httpcore
import httpx

from storage.contract.sources import is_pickle, is_url, pickle_refusal
from storage.egress.fetch import FetchError, FetchPolicy, check_url, exchange
from storage.errors import InvalidInput
from storage.settings import Settings

CHECKPOINT_KINDS = ("sd15", "sdxl", "sdxl-controlnet", "base_model")
"""What a single-file checkpoint may be registered as: a model family, or a named base model."""


class CheckpointTooLarge(FetchError):
    """The body is longer than the policy's byte cap; the message says by how much, when it is known."""


REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


def check_weights_source(source: str, *, field: str, kind: str, settings: Settings) -> None:
    """Refuse, naming `field`, a source that a worker would refuse to load (the module docstring).
    `kind` is a model family or an asset kind."""
    if kind not in CHECKPOINT_KINDS:
        if is_url(source):
            raise InvalidInput(
                field,
                f"a {kind} is loaded from a hub id or a local path; only checkpoints of models "
                f"({', '.join(CHECKPOINT_KINDS)}) may be URLs",
                value=source,
            )
        return
    if is_pickle(source) and not settings.allow_pickle_checkpoints:
        raise InvalidInput(field, pickle_refusal(source), value=source)
    if is_url(source):
        try:
            check_url(source, allow_loopback=settings.allow_loopback_urls, timeout=settings.fetch_timeout_seconds)
        except FetchError as exc:
            raise InvalidInput(field, exc.message, value=source) from None


def download(
    url: str, policy: FetchPolicy, write: Callable[[bytes], None], *, max_redirects: int = MAX_REDIRECTS
) -> int:
    """Stream the body at `url` into `write`, chunk by chunk; returns its length in bytes.

    Raises FetchError (its message safe to show) for a refused URL or redirect target, a
    status other than 200, the deadline (`policy.timeout`, for every hop together) or a body
    longer than `policy.max_bytes`. A redirect's own body is never read.
    """
    deadline = time.monotonic() + policy.timeout
    for _hop in range(max_redirects + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"timed out after {policy.timeout:g} s")
        with exchange(url, replace(policy, timeout=left)) as sent:
            status = sent.response.status
            if status in REDIRECTS:
                location = httpx.Headers(sent.response.headers).get("location")
                if not location:
                    raise FetchError(f"the server answered HTTP {status} without a Location")
                url = str(httpx.URL(url).join(location))
                continue
            if status != 200:
                raise FetchError(f"the server answered HTTP {status}")
            return stream_capped(sent.response, policy.max_bytes, write)
    raise FetchError(f"the server redirected more than {max_redirects} times")


def stream_capped(response: httpcore.Response, max_bytes: int, write: Callable[[bytes], None]) -> int:
    """Write the body, refused as soon as it is (or says it will be) longer than `max_bytes`."""
    declared = httpx.Headers(response.headers).get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise CheckpointTooLarge(f"the checkpoint is {int(declared)} bytes, more than the limit of {max_bytes} bytes")
    total = 0
    for chunk in response.iter_stream():
        total += len(chunk)
        if total > max_bytes:
            raise CheckpointTooLarge(
                f"the checkpoint is more than the limit of {max_bytes} bytes (it was sent without a length)"
            )
        write(chunk)
    return total
