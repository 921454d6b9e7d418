"""SD 1.5 inpainting and SDXL inpainting pipelines with random weights, built from their published configs.

No weights can be downloaded where the benchmarks run, so the components are
made from the `config.json` values that the public checkpoints publish
(stable-diffusion-v1-5/stable-diffusion-inpainting and
diffusers/stable-diffusion-xl-1.0-inpainting-0.1), written out here, and
initialised at random. Same shapes, same FLOPs, same code path; the pictures are
noise. The tokenizers are the byte-level CLIP tokenizer of worker.tiny.sd15 (the real
BPE merges are part of the download); it yields the same 77-token sequences.

`tiny=True` gives the small configs diffusers' own tests use, for a CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from worker.tiny.sd15 import build_tokenizer

FAMILIES = ("sd15", "sdxl")

# Published UNet FLOPs per forward at the native latent size, batch 1 (REFERENCE.md).
UNET_TFLOP = {"sd15": 0.80, "sdxl": 6.76}
NATIVE_SIZE = {"sd15": 512, "sdxl": 1024}

SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

VAE = {
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "norm_num_groups": 32,
    "act_fn": "silu",
}

UNET_SD15 = {
    "in_channels": 9,
    "out_channels": 4,
    "sample_size": 64,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}

UNET_SDXL = {
    "in_channels": 9,
    "out_channels": 4,
    "sample_size": 128,
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}

CLIP_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
CLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}

# diffusers' test-suite sizes: a few MB, fast on a CPU.
TINY_VAE = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "in_channels": 3,
    "out_channels": 3,
}
TINY_UNET = {
    "in_channels": 9,
    "out_channels": 4,
    "sample_size": 32,
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
}
TINY_SD15_UNET = {**TINY_UNET, "cross_attention_dim": 32}
# Time ids: 6 values x 8 + pooled text 32 = 80 (no aesthetic score).
TINY_SDXL_UNET = {
    **TINY_UNET,
    "attention_head_dim": [2, 4],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "transformer_layers_per_block": [1, 2],
    "projection_class_embeddings_input_dim": 80,
    "cross_attention_dim": 64,
}
TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "max_position_embeddings": 77,
    "vocab_size": 1000,
    "hidden_act": "gelu",
    "projection_dim": 32,
}


def unet_config(family: str, tiny: bool) -> dict[str, Any]:
    if family == "sd15":
        return TINY_SD15_UNET if tiny else UNET_SD15
    return TINY_SDXL_UNET if tiny else UNET_SDXL


def build_unet(family: str, tiny: bool) -> UNet2DConditionModel:
    return UNet2DConditionModel(**unet_config(family, tiny))


def _text_encoder(config: dict[str, Any], *, projection: bool = False) -> Any:
    clip = CLIPTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, **config)
    return CLIPTextModelWithProjection(clip) if projection else CLIPTextModel(clip)


def build_pipeline(family: str, *, tiny: bool, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """A StableDiffusion(XL)InpaintPipeline with random weights, made on `device` (initialised there, not
    on the CPU and moved), then cast to `dtype`."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp, torch.device(device):
        tokenizer = build_tokenizer(Path(tmp))
        vae = AutoencoderKL(**(TINY_VAE if tiny else VAE))
        unet = build_unet(family, tiny)
        scheduler = DDIMScheduler(**SCHEDULER)
        if family == "sd15":
            pipe = StableDiffusionInpaintPipeline(
                vae=vae,
                text_encoder=_text_encoder(TINY_CLIP if tiny else CLIP_L),
                tokenizer=tokenizer,
                unet=unet,
                scheduler=scheduler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        else:
            vae.register_to_config(scaling_factor=0.13025, force_upcast=True)
            pipe = StableDiffusionXLInpaintPipeline(
                vae=vae,
                text_encoder=_text_encoder(TINY_CLIP if tiny else CLIP_L),
                text_encoder_2=_text_encoder(TINY_CLIP if tiny else CLIP_BIGG, projection=True),
                tokenizer=tokenizer,
                tokenizer_2=tokenizer,
                unet=unet,
                scheduler=scheduler,
                requires_aesthetics_score=False,
                force_zeros_for_empty_prompt=True,
                add_watermarker=False,
            )
    modules = [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]
    made_on = {p.device.type for module in modules for p in module.parameters()}
    if made_on != {device.type}:  # initialising SDXL's 3.5 B parameters on a CPU takes minutes
        raise RuntimeError(f"the random weights were made on {sorted(made_on)}, not on {device.type}")
    return pipe.to(device=device, dtype=dtype)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_unet_flops(family: str, tiny: bool, size: int) -> tuple[int, float]:
    """(parameters, FLOPs of one UNet forward at batch 1 for a size x size picture), on the meta device.

    Attention runs through diffusers' plain AttnProcessor (explicit bmm), so the
    FLOP counter sees its matmuls; nothing is computed and no memory is used.
    """
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = build_unet(family, tiny)
        unet.set_attn_processor(AttnProcessor())
        side = size // 8
        sample = torch.zeros(1, unet.config.in_channels, side, side)
        context = torch.zeros(1, 77, unet.config.cross_attention_dim)
        added = None
        if unet.config.addition_embed_type == "text_time":
            config = unet.config
            pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
            added = {"text_embeds": torch.zeros(1, pooled), "time_ids": torch.zeros(1, 6)}
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            unet(sample, torch.tensor([500]), encoder_hidden_states=context, added_cond_kwargs=added)
    return count_parameters(unet), float(counter.get_total_flops())
