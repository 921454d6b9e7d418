"""Single-file checkpoints for tests: diffusers pipelines written in the original Stable Diffusion layout.

Community checkpoints (Civitai, A1111) ship the CompVis layout: the UNet under
`model.diffusion_model.`, the VAE under `first_stage_model.`, the text encoder under
`cond_stage_model.transformer.` (SD 1.5) or, for SDXL, the CLIP-L encoder under
`conditioner.embedders.0.transformer.` and the OpenCLIP bigG one under
`conditioner.embedders.1.model.`. diffusers converts that layout into its own when it
loads a single file (`from_single_file`); these functions go the other way, so a test
can write such a checkpoint from a pipeline it built and check that the service loads it
to the same weights.

The key correspondence is worked out from each component's config (levels, layers per
level, which levels carry attention), so the tiny test configs and the full-size ones
convert alike. Tensors are not copied, except where the layouts differ in shape: the VAE's
attention projections are 1x1 convolutions in the original, and the OpenCLIP encoder
keeps q, k and v in one `in_proj` matrix and its text projection transposed.

The builders below make the pipelines: the tiny SD 1.5 one of worker.tiny, a tiny SDXL
whose two text encoders differ in width (diffusers tells SDXL's encoders apart in a single
file by their width, as CLIP-L's 768 and OpenCLIP bigG's 1280 do), and the full-size
SD 1.5 inpainting architecture with random weights, made on the meta device and filled
in place, which takes seconds instead of the default initialisers' half a minute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
VAE_ATTENTION_PARTS = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}
OPENCLIP_LAYER_PARTS = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}


def unet_prefixes(config: Any) -> dict[str, str]:
    """diffusers prefix -> original prefix for every block of a UNet2DConditionModel with this config."""
    per_level = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    prefixes = dict(UNET_TOP)
    for i in range(levels):
        for j in range(per_level):
            block = (per_level + 1) * i + j + 1
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{block}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{block}.1."
        for j in range(per_level + 1):
            block = (per_level + 1) * i + j
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{block}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{block}.1."
        if i < levels - 1:
            prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(per_level + 1) * (i + 1)}.0.op."
            # The upsampler follows the level's last resnet, and its attention when the level has one.
            slot = 2 if "CrossAttn" in config["up_block_types"][i] else 1
            prefixes[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{(per_level + 1) * i + per_level}.{slot}."
    prefixes.update(
        {"mid_block.resnets.0.": "middle_block.0.", "mid_block.attentions.0.": "middle_block.1."}
        | {"mid_block.resnets.1.": "middle_block.2."}
    )
    return prefixes


def rename(key: str, prefixes: dict[str, str], inner: dict[str, str] | None = None) -> str:
    """`key` with its longest matching prefix replaced; `inner` renames what follows a resnet prefix."""
    for prefix in sorted((p for p in prefixes if key.startswith(p)), key=len, reverse=True):
        rest = key[len(prefix) :]
        if inner and ".resnets." in prefix:
            head, _, tail = rest.partition(".")
            rest = f"{inner.get(head, head)}.{tail}"
        return prefixes[prefix] + rest
    raise KeyError(f"no original name for {key!r}")


def unet_to_original(state: dict[str, Any], config: Any) -> dict[str, Any]:
    prefixes = unet_prefixes(config)
    return {"model.diffusion_model." + rename(k, prefixes, RESNET_PARTS): v for k, v in state.items()}


def vae_prefixes(config: Any) -> dict[str, str]:
    levels = len(config["block_out_channels"])
    per_level = config["layers_per_block"]
    prefixes = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out."}
    for i in range(levels):
        up = levels - 1 - i  # the original numbers decoder levels from the highest resolution
        for j in range(per_level):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
        for j in range(per_level + 1):
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{up}.block.{j}."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{up}.upsample."
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.mid_block.resnets.0."] = f"{part}.mid.block_1."
        prefixes[f"{part}.mid_block.resnets.1."] = f"{part}.mid.block_2."
        prefixes[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
    for name in ("encoder.conv_in.", "encoder.conv_out.", "decoder.conv_in.", "decoder.conv_out."):
        prefixes[name] = name
    prefixes["quant_conv."] = "quant_conv."
    prefixes["post_quant_conv."] = "post_quant_conv."
    return prefixes


def vae_to_original(state: dict[str, Any], config: Any) -> dict[str, Any]:
    prefixes = vae_prefixes(config)
    out = {}
    for key, value in state.items():
        name = rename(key, prefixes, {"conv_shortcut": "nin_shortcut"})
        if ".mid.attn_1." in name:
            head, _, tail = name.partition(".mid.attn_1.")
            part = next(p for p in VAE_ATTENTION_PARTS if tail.startswith(p))
            name = f"{head}.mid.attn_1.{VAE_ATTENTION_PARTS[part]}{tail[len(part) :]}"
            if value.ndim == 2:  # a linear layer here, a 1x1 convolution there
                value = value[:, :, None, None]
        out["first_stage_model." + name] = value
    return out


def clip_to_original(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """transformers' CLIPTextModel under `prefix`, with the `text_model.` level that transformers 5 dropped."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}


def openclip_to_original(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """transformers' CLIPTextModelWithProjection in OpenCLIP's layout (SDXL's second encoder)."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
        prefix + "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    state.pop("embeddings.position_ids", None)
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
    for i in layers:
        ours, theirs = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{ours}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"{theirs}attn.in_proj_{kind}"] = torch.cat(qkv)
        for key in [k for k in state if k.startswith(ours)]:
            rest = key[len(ours) :]
            part = next(p for p in OPENCLIP_LAYER_PARTS if rest.startswith(p))
            out[theirs + OPENCLIP_LAYER_PARTS[part] + rest[len(part) :]] = state.pop(key)
    if state:
        raise KeyError(f"no OpenCLIP name for {sorted(state)[:5]}")
    return out


def pipeline_to_original(pipe: Any) -> dict[str, Any]:
    """One state dict in the original layout for an SD 1.5 or SDXL (inpainting) pipeline."""
    state = unet_to_original(pipe.unet.state_dict(), pipe.unet.config)
    state |= vae_to_original(pipe.vae.state_dict(), pipe.vae.config)
    encoder = {k: v for k, v in pipe.text_encoder.state_dict().items() if not k.endswith("position_ids")}
    if getattr(pipe, "text_encoder_2", None) is None:
        return state | clip_to_original(encoder, "cond_stage_model.transformer.")
    state |= clip_to_original(encoder, "conditioner.embedders.0.transformer.")
    return state | openclip_to_original(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model.")


def save_single_file(pipe: Any, path: Path) -> Path:
    """Write `pipe` as one .safetensors checkpoint in the original layout; returns `path`."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in pipeline_to_original(pipe).items()}
    save_file(state, str(path))
    return path


def write_both_layouts(pipe: Any, root: Path) -> tuple[Path, Path]:
    """`pipe` as a diffusers directory (root/diffusers) and as one checkpoint (root/model.safetensors)."""
    pipe.save_pretrained(root / "diffusers")
    return root / "diffusers", save_single_file(pipe, root / "model.safetensors")


def build_tiny_sdxl_pair(*, in_channels: int, seed: int = 0) -> Any:
    """A tiny SDXL inpainting pipeline whose encoders are 32 and 48 wide (the module docstring)."""
    from worker.tiny.sdxl import build_tiny_sdxl

    return build_tiny_sdxl(in_channels=in_channels, seed=seed, second_width=48)


def build_full_sd15(dtype: Any) -> Any:
    """The SD 1.5 inpainting architecture at full size (benchmarks.architectures' published configs), random.

    Every module is made without running its initialisers (the UNet and VAE on the meta device,
    the text encoder under transformers' `no_init_weights`, which keeps its position-id buffer)
    and its weights are then filled in place: uniform in +-1/sqrt(fan_in), as torch's own layers
    start, norms 1, biases 0.
    """
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from transformers.initialization import no_init_weights

    from benchmarks.architectures import CLIP_L, SCHEDULER, UNET_SD15, VAE
    from worker.tiny.sd15 import build_tokenizer

    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**UNET_SD15), AutoencoderKL(**VAE)
    with no_init_weights():
        text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, **CLIP_L))
    generator = torch.Generator().manual_seed(0)
    modules = [unet.to(dtype).to_empty(device="cpu"), vae.to(dtype).to_empty(device="cpu"), text_encoder.to(dtype)]
    with torch.no_grad():
        for name, param in (item for module in modules for item in module.named_parameters()):
            if param.ndim > 1:
                bound = param[0].numel() ** -0.5
                param.uniform_(-bound, bound, generator=generator)
            else:
                param.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp))
    return StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
