"""A tiny random-weight Stable Diffusion inpainting pipeline, built the way diffusers' own tests do.

It is a real `StableDiffusionInpaintPipeline` (UNet with block_out_channels=(32, 64),
a 2-block VAE, a 5-layer CLIP text encoder and a byte-level CLIP tokenizer made
in code), written with `save_pretrained` and loaded back through the registry's
normal `from_pretrained` path. Its pictures are noise; its code path is the real one.
It runs at 64 px in well under a second per step on a CPU.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from storage.contract.specs import Family, ModelSpec, Range

TINY_SIZE = 64


def tiny_spec(slug: str, source: str, family: Family = "sd15") -> ModelSpec:
    """Registry entry for a tiny pipeline: 64 px by default, few steps allowed."""
    return ModelSpec(
        slug=slug,
        family=family,
        source=source,
        sizes=None,
        max_side=128,
        default_size=TINY_SIZE,
        steps=Range(min=1, max=50, default=2),
        guidance_scale=Range(min=0, max=25, default=7.5),
        strength=Range(min=0.1, max=1, default=1),
    )


def build_tokenizer(workdir: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over the 256 byte symbols, with no merges: 514 tokens."""
    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (workdir / "vocab.json").write_text(json.dumps(vocab))
    (workdir / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(workdir / "vocab.json"), str(workdir / "merges.txt"), model_max_length=77)


def build_tiny_vae(seed: int | None = None) -> AutoencoderKL:
    """A 2-block VAE with 4 latent channels; `seed` None continues the current random stream."""
    if seed is not None:
        torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionInpaintPipeline:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = build_tiny_vae()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp))
    return StableDiffusionInpaintPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
