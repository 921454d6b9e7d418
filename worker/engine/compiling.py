"""torch.compile for resident UNets, in shape buckets, with a compile cache that outlives the worker.

With `INPAINT_TORCH_COMPILE` on, the loader of an SD 1.5 or SDXL pipeline hands its
UNet to `compile_unet`. The module object stays (diffusers reads its config, dtype,
device and add_embedding); only its `forward` becomes a `BucketedForward`, which
sends a call to a graph compiled for that exact shape (`dynamic=False`) when the
latents are one of the buckets (`INPAINT_COMPILE_SIZES`) at a batch the worker can
produce, and to the original eager forward otherwise. A request at an unlisted size
therefore never compiles: it runs eager, with the same results.

Dynamo keeps every graph on the code object of the UNet's forward, which all UNets
share, so its recompile limits are raised by each UNet's bound: buckets x batches x
VARIANTS. Graphs are written to inductor's FX graph and AOTAutograd caches in
`INPAINT_COMPILE_CACHE_DIR`, so a restarted worker loads them instead of compiling.
torch is imported only when a UNet is compiled: this module is imported by
worker.engine.pipelines, which an erase-only worker runs without torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.settings import Settings

log = logging.getLogger(__name__)

VARIANTS = 4
"""Graphs one shape may need: the scheduler's timesteps are integers or floats, and an SDXL
ControlNet job adds residual inputs; each is a guard of its own."""


@dataclass(frozen=True)
class CompileOptions:
    sizes: tuple[tuple[int, int], ...]
    """(width, height) in pixels."""
    max_batch_size: int
    cache_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> CompileOptions | None:
        """The options `INPAINT_TORCH_COMPILE` asks for; None when it is off."""
        if not settings.torch_compile:
            return None
        return cls(
            sizes=settings.compile_sizes,
            max_batch_size=settings.max_batch_size,
            cache_dir=settings.resolved_compile_cache_dir,
        )


def unet_batches(max_images: int) -> frozenset[int]:
    """UNet batch sizes a pipeline call can have: 1..max_images images (jobs of one image each, or
    one job's samples), doubled when classifier-free guidance runs both halves in one pass."""
    return frozenset(images * halves for images in range(1, max_images + 1) for halves in (1, 2))


def use_cache_dir(path: Path) -> None:
    """Keep inductor's compiled graphs in `path`. Inductor reads TORCHINDUCTOR_CACHE_DIR when it
    first needs its cache, which is why this runs before the first compile of the process."""
    # torch is imported only once a UNet is compiled: see the module docstring.
    import torch._functorch.config
    import torch._inductor.config

    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path.resolve())
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True


def raise_recompile_limits(graphs: int) -> None:
    """Make room for `graphs` more graphs on the UNet's forward. The limits count per code object,
    which every UNet of the process shares, so each compiled UNet adds its own bound."""
    import torch._dynamo  # only once a UNet is compiled: see the module docstring

    torch._dynamo.config.recompile_limit += graphs
    torch._dynamo.config.accumulated_recompile_limit += graphs


class BucketedForward:
    """A UNet's forward that runs compiled when the picture (latents x `scale`) is one of `sizes`,
    (width, height), and the batch one of `batches`; eager for any other shape, and while LoRAs
    (PEFT layers) are loaded, which change the module."""

    def __init__(self, unet: Any, sizes: frozenset[tuple[int, int]], batches: frozenset[int], scale: int) -> None:
        import torch  # only once a UNet is compiled: see the module docstring

        self.unet = unet
        self.sizes = sizes
        self.batches = batches
        self.scale = scale
        self.eager: Callable[..., Any] = unet.forward
        self.compiled: Callable[..., Any] = torch.compile(self.eager, dynamic=False)
        self.compiled_shapes: set[tuple[int, int, int]] = set()
        """(width, height, batch) sent to the compiled forward so far: each is logged once."""

    def shape_of(self, sample: Any) -> tuple[int, int, int]:
        """(width, height, batch) of a latent batch (batch, channels, height, width)."""
        batch, _, height, width = sample.shape
        return width * self.scale, height * self.scale, batch

    def compiles(self, sample: Any) -> bool:
        width, height, batch = self.shape_of(sample)
        return (width, height) in self.sizes and batch in self.batches and not getattr(self.unet, "peft_config", None)

    def __call__(self, sample: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.compiles(sample):
            return self.eager(sample, *args, **kwargs)
        shape = self.shape_of(sample)
        if shape not in self.compiled_shapes:
            self.compiled_shapes.add(shape)
            log.info("compiling the UNet for %dx%d at batch %d, unless the compile cache has it", *shape)
        return self.compiled(sample, *args, **kwargs)


def compile_unet(pipe: Any, options: CompileOptions, *, max_samples: int) -> BucketedForward:
    """Route `pipe.unet`'s forward through a `BucketedForward` for `options.sizes`; nothing is
    compiled until a call at one of them. max_samples: the model's largest `samples`.

    The UNet's parameters are frozen first: loading a LoRA freezes them (PEFT), and a graph
    guarded on unfrozen ones would compile again after every job's LoRA was taken off."""
    sizes = frozenset(options.sizes)
    batches = unet_batches(max(options.max_batch_size, max_samples))
    use_cache_dir(options.cache_dir)
    raise_recompile_limits(len(sizes) * len(batches) * VARIANTS)
    pipe.unet.requires_grad_(False)
    forward = BucketedForward(pipe.unet, sizes, batches, int(pipe.vae_scale_factor))
    pipe.unet.forward = forward
    return forward
