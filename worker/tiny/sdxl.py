"""Tiny random-weight SDXL components, built the way diffusers' own tests build them.

- `build_tiny_sdxl`: a real `StableDiffusionXLInpaintPipeline`: UNet with
  block_out_channels=(32, 64) and addition_embed_type="text_time", two 5-layer
  text encoders (CLIPTextModel and CLIPTextModelWithProjection), a 2-block VAE.
  `in_channels=9` gives an inpainting UNet (like diffusers/stable-diffusion-xl-
  1.0-inpainting-0.1), 4 a plain one (like the other SDXL checkpoints).
- `build_tiny_controlnet`: an SDXL `ControlNetModel` that fits it.
- `build_tiny_safety_checker`, `build_tiny_depth`: a `StableDiffusionSafetyChecker`
  and a `DPTForDepthEstimation` with their image processors.

Each is written with `save_pretrained` and loaded back through the registry's
normal path. Pictures are noise at 64 px; the code path is the real one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTConfig,
    DPTForDepthEstimation,
    DPTImageProcessor,
    ZoeDepthConfig,
    ZoeDepthForDepthEstimation,
    ZoeDepthImageProcessor,
)

from worker.tiny.sd15 import build_tiny_vae, build_tokenizer

SDXL_BLOCKS: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "transformer_layers_per_block": (1, 2),
    "projection_class_embeddings_input_dim": 80,  # 6 time ids * 8 + the pooled text embedding (32)
    "cross_attention_dim": 64,  # the two text encoders' hidden states side by side
}


def build_text_encoders(
    vocab_size: int, *, second_width: int = 32
) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    def config(width: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=width,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=vocab_size,
            hidden_act="gelu",
            projection_dim=width,
        )

    torch.manual_seed(1)
    first = CLIPTextModel(config(32))
    torch.manual_seed(2)
    return first, CLIPTextModelWithProjection(config(second_width))


def build_tiny_sdxl(*, in_channels: int = 9, seed: int = 0, second_width: int = 32) -> StableDiffusionXLInpaintPipeline:
    """`second_width`: the second text encoder's width. diffusers tells SDXL's two encoders apart in a
    single-file checkpoint by width alone (768 and 1280 in the real ones), so a tiny checkpoint needs
    them to differ (tests.support.checkpoints)."""
    torch.manual_seed(seed)
    # cross attention: both encoders' states side by side; added embedding: 6 time ids x 8 + the pooled text
    blocks = {
        **SDXL_BLOCKS,
        "cross_attention_dim": 32 + second_width,
        "projection_class_embeddings_input_dim": 6 * 8 + second_width,
    }
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **blocks,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, tokenizer_2 = build_tokenizer(Path(tmp)), build_tokenizer(Path(tmp))
    text_encoder, text_encoder_2 = build_text_encoders(len(tokenizer), second_width=second_width)
    return StableDiffusionXLInpaintPipeline(
        vae=build_tiny_vae(seed),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            steps_offset=1,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
        ),
        requires_aesthetics_score=False,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def build_tiny_controlnet(seed: int = 0) -> ControlNetModel:
    """A ControlNet whose zero-initialised output convolutions are randomised, so that it steers."""
    torch.manual_seed(seed)
    net = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(16, 32), **SDXL_BLOCKS)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith(
                ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            ):
                param.normal_(std=0.5)
    return net


def build_tiny_safety_checker() -> tuple[Any, Any]:
    """A StableDiffusionSafetyChecker on a 2-layer CLIP vision tower, and its CLIPImageProcessor."""

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return StableDiffusionSafetyChecker(config).eval(), processor


def build_tiny_depth() -> tuple[Any, Any]:
    """A 2-layer DPTForDepthEstimation (transformers' own test config) and its DPTImageProcessor."""

    torch.manual_seed(0)
    config = DPTConfig(
        image_size=32,
        patch_size=16,
        num_channels=3,
        hidden_size=32,
        fusion_hidden_size=32,
        num_hidden_layers=2,
        backbone_out_indices=[0, 1, 2, 3],
        num_attention_heads=4,
        intermediate_size=37,
        is_hybrid=False,
        neck_hidden_sizes=[16, 32],
    )
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    return DPTForDepthEstimation(config).eval(), processor


def tiny_dinov2() -> Any:
    """A 4-layer Dinov2 backbone config: what Depth Anything and ZoeDepth stand on."""
    return Dinov2Config(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )


def build_tiny_depth_anything() -> tuple[Any, Any]:
    """A tiny DepthAnythingForDepthEstimation (relative inverse depth, as DPT) and its image processor."""
    torch.manual_seed(1)
    config = DepthAnythingConfig(
        backbone_config=tiny_dinov2(),
        reassemble_hidden_size=32,
        patch_size=8,
        neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=16,
    )
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    return DepthAnythingForDepthEstimation(config).eval(), processor


def build_tiny_zoedepth() -> tuple[Any, Any]:
    """A tiny ZoeDepthForDepthEstimation (metric depth, one bin configuration) and its image processor."""
    torch.manual_seed(2)
    config = ZoeDepthConfig(
        backbone_config=tiny_dinov2(),
        backbone_hidden_size=32,
        hidden_size=32,
        patch_size=8,
        neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16,
        bottleneck_features=16,
        num_relative_features=16,
        reassemble_factors=[4, 2, 1, 0.5],
        bin_embedding_dim=16,
        num_attractors=[4, 4, 2, 2],
        bin_configurations=[{"n_bins": 8, "min_depth": 1e-3, "max_depth": 10.0, "name": "nyu"}],
    )
    processor = ZoeDepthImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False, ensure_multiple_of=8)
    return ZoeDepthForDepthEstimation(config).eval(), processor


def save_pair(model: Any, processor: Any, path: Path) -> Path:
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
