"""Per-job adapters on a resident pipeline: LoRAs, a replacement VAE, textual-inversion embeddings.

`applied_adapters` puts them on for one job and takes every one of them off in
a `finally`, so the next job on the same pipeline never inherits them:

- LoRAs: `load_lora_weights` (PEFT) under adapter names `job_lora_<i>`, weighted by
  `set_adapters`; afterwards `unload_lora_weights` restores the original layers.
- VAE: the pipeline's `vae` is swapped, and swapped back.
- Embeddings: `load_textual_inversion` under the token of the registration (default:
  its name; SDXL files carry `clip_l` and `clip_g` tensors, one per text encoder);
  afterwards `unload_textual_inversion` removes the tokens and their embeddings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from storage.errors import JobFailure
from worker.engine.types import JobComponents, NamedSource

log = logging.getLogger(__name__)


def lora_arguments(source: str) -> tuple[str, dict[str, Any]]:
    """A file is passed as its directory plus `weight_name`; a directory or hub id as it is."""
    path = Path(source)
    if path.is_file():
        return str(path.parent), {"weight_name": path.name}
    return source, {}


def load_loras(pipe: Any, loras: tuple[NamedSource, ...]) -> list[str]:
    names = []
    for index, lora in enumerate(loras):
        name = f"job_lora_{index}"
        location, extra = lora_arguments(lora.source)
        try:
            pipe.load_lora_weights(location, adapter_name=name, **extra)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            log.error("loading LoRA %s from %s failed: %s", lora.name, lora.source, exc)
            raise JobFailure(
                "model_unavailable",
                f"LoRA {lora.name!r} could not be loaded onto this model: "
                "its file was not found or does not fit this model",
            ) from None
        names.append(name)
    if names:
        pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
    return names


def embedding_targets(pipe: Any) -> list[tuple[str | None, Any, Any]]:
    """(state-dict key, tokenizer, text encoder) per text encoder: SDXL has two."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return [
            ("clip_l", pipe.tokenizer, pipe.text_encoder),
            ("clip_g", pipe.tokenizer_2, pipe.text_encoder_2),
        ]
    return [(None, pipe.tokenizer, pipe.text_encoder)]


def load_embedding(pipe: Any, embedding: NamedSource) -> list[tuple[str, Any, Any]]:
    """Load one embedding; returns what to unload: (token, tokenizer, text encoder) per encoder."""
    token = str(embedding.options.get("token") or embedding.name)
    loaded: list[tuple[str, Any, Any]] = []
    try:
        state = load_file(embedding.source) if embedding.source.endswith(".safetensors") else None
        for key, tokenizer, encoder in embedding_targets(pipe):
            weights = state[key] if key and state is not None else (state or embedding.source)
            pipe.load_textual_inversion(weights, token=token, tokenizer=tokenizer, text_encoder=encoder)
            loaded.append((token, tokenizer, encoder))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.error("loading embedding %s from %s failed: %s", embedding.name, embedding.source, exc)
        unload_embeddings(pipe, loaded)
        raise JobFailure(
            "model_unavailable",
            f"embedding {embedding.name!r} could not be loaded onto this "
            "model: its file was not found or does not fit this model",
        ) from None
    return loaded


def unload_embeddings(pipe: Any, loaded: list[tuple[str, Any, Any]]) -> None:
    for token, tokenizer, encoder in reversed(loaded):
        pipe.unload_textual_inversion(token, tokenizer=tokenizer, text_encoder=encoder)


@contextmanager
def applied_adapters(pipe: Any, components: JobComponents) -> Iterator[None]:
    """The job's VAE, LoRAs and embeddings on `pipe`, all removed on the way out, whatever happens."""
    original_vae = pipe.vae
    lora_names: list[str] = []
    embedded: list[tuple[str, Any, Any]] = []
    try:
        if components.vae is not None:
            pipe.vae = components.vae
        lora_names = load_loras(pipe, components.loras)
        for embedding in components.embeddings:
            embedded.extend(load_embedding(pipe, embedding))
        yield
    finally:
        if lora_names or components.loras:
            pipe.unload_lora_weights()
        unload_embeddings(pipe, embedded)
        pipe.vae = original_vae
