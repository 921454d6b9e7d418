"""The worker's inference path on a CUDA GPU: SD 1.5 inpainting at 512 px and SDXL inpainting at 1024 px.

Both pipelines are built from their published configs with random weights
(benchmarks.architectures; no hub), placed as the worker places a loaded pipeline
(worker.engine.diffusion: fp16 on CUDA, channels-last UNet, progress bars off), and run
through the worker's own code path: `worker.engine.inference.inpaint` over
`worker.engine.diffusion.DiffusersInpainter` (fresh scheduler per call, per-image CPU
generators, step callback, compositing through the mask). Beside it, in the same
run and on the same pipeline object, the plain diffusers call a user would
write, and at batch > 1 the dynamic-batching path (`worker.engine.inference.inpaint_batch`:
that many one-image jobs with their own prompts and seeds as one call). For each
batch (samples per job, or jobs per call) it prints ms per image, images/s,
denoising steps/s and model-FLOPs utilisation:

    MFU = images/s x steps x 2 (guidance) x UNet FLOPs per forward / peak

with the UNet FLOPs counted on the meta device at the picture's size (0.80 TFLOP
for SD 1.5 at 512 px and 6.76 TFLOP for SDXL at 1024 px; VAE and text encoders
are not counted) and the peak a flag (989 TFLOP/s: H100 SXM dense bf16/fp16).

    .venv/bin/python -m benchmarks.gpu                                  # CUDA, full size, 25 steps
    .venv/bin/python -m benchmarks.gpu --peak-tflops 989 --batches 1,4,8 --families sd15
    .venv/bin/python -m benchmarks.gpu --device cpu --tiny              # proves the code path on a CPU
    .venv/bin/python -m benchmarks.gpu --count-only                     # parameters and FLOPs, any machine
    .venv/bin/python -m benchmarks.gpu --compile                        # UNet compiled (worker.engine.compiling)

With --compile each batch's first, untimed call compiles the UNet for that shape
(minutes on a GPU; seconds from the cache in data/compile-cache on a later run);
compare its rows with a run without it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging as diffusers_logging

from benchmarks.architectures import (
    FAMILIES,
    NATIVE_SIZE,
    UNET_TFLOP,
    build_pipeline,
    count_parameters,
    count_unet_flops,
)
from benchmarks.report import print_header, print_table
from storage.contract.params import JobParams
from tests.support.images import box_mask, scene
from worker.engine.compiling import CompileOptions, compile_unet
from worker.engine.diffusion import DiffusersInpainter, dtype_for
from worker.engine.inference import inpaint, inpaint_batch

TINY_SIZE = {"sd15": 64, "sdxl": 128}
COMPILE_CACHE = Path("data/compile-cache")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="diffusers' test-sized configs, 64/128 px")
    parser.add_argument("--families", default=",".join(FAMILIES), help="sd15,sdxl (default: both)")
    parser.add_argument("--batches", default="1,4,8", help="images per call (default: %(default)s)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: 25; 2 with --tiny)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per path and batch (default: 3)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="the device's dense bf16/fp16 peak in TFLOP/s (default: 989, H100 SXM)",
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the plain diffusers loop")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the UNet at the picture's size and these batches, as INPAINT_TORCH_COMPILE does",
    )
    parser.add_argument(
        "--count-only",
        action="store_true",
        help="only count UNet parameters and FLOPs (meta device: no memory, no GPU)",
    )
    return parser.parse_args(argv)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def place_like_worker(pipe: Any, device: torch.device) -> Any:
    """What worker.engine.diffusion.load_pretrained does after loading: channels-last UNet on CUDA, no bars."""
    if device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_calls(call: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        call()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def job_params(batch: int, steps: int, size: int) -> JobParams:
    """JobParams as the API resolves them. The API allows 1-4 samples; batch 8 is built here directly."""
    return JobParams(
        prompt="a red apple on a wooden table",
        negative_prompt=None,
        samples=batch,
        scheduler="DDIM",
        num_inference_steps=steps,
        guidance_scale=7.5,
        strength=1.0,
        seed=1,
        width=size,
        height=size,
    )


def run_paths(pipe: Any, params: JobParams, device: torch.device, repeats: int, raw: bool) -> dict[str, list[float]]:
    """Warm each path once, then time them alternately: {"worker": [...], "raw": [...]}."""
    image, mask = scene((params.width, params.height)), box_mask((params.width, params.height))
    inpainter = DiffusersInpainter(pipe)

    def worker_call() -> object:
        return inpaint(inpainter, params, image, mask, on_step=lambda step, total: None)

    jobs = [
        (
            params.model_copy(update={"samples": 1, "seed": params.seed + i, "prompt": f"{params.prompt} {i}"}),
            image,
            mask,
        )
        for i in range(params.samples)
    ]

    def batched_call() -> object:
        return inpaint_batch(inpainter, jobs, on_step=lambda step, total: None)

    def raw_call() -> object:
        return pipe(
            prompt=params.prompt,
            image=image,
            mask_image=mask,
            width=params.width,
            height=params.height,
            strength=params.strength,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            num_images_per_prompt=params.samples,
            generator=torch.Generator("cpu").manual_seed(params.seed),
            output_type="pil",
        )

    calls = {
        "worker": worker_call,
        **({"batched jobs": batched_call} if params.samples > 1 else {}),
        **({"raw": raw_call} if raw else {}),
    }
    for call in calls.values():
        call()
    results: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            results[name] += time_calls(call, device, 1)
    return results


def rows_for(
    family: str, size: int, steps: int, flops: float, batch: int, results: dict[str, list[float]], peak: float
) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, seconds in results.items():
        median = statistics.median(seconds)
        images_per_s = batch / median
        mfu = images_per_s * steps * 2 * flops / (peak * 1e12)
        rows.append(
            [
                family,
                size,
                batch,
                name,
                f"{1000 * median / batch:.1f}",
                f"{images_per_s:.2f}",
                f"{steps * batch / median:.1f}",
                f"{100 * mfu:.1f}%",
            ]
        )
    if "raw" in results:
        ratio = statistics.median(results["raw"]) / statistics.median(results["worker"])
        rows.append([family, size, batch, "worker / raw", "", f"{ratio:.3f}", "", ""])
    return rows


def bench_family(family: str, args: argparse.Namespace, device: torch.device) -> list[list[object]]:
    size = TINY_SIZE[family] if args.tiny else NATIVE_SIZE[family]
    params_count, flops = count_unet_flops(family, args.tiny, size)
    dtype = dtype_for(device)
    started = time.perf_counter()
    pipe = place_like_worker(build_pipeline(family, tiny=args.tiny, device=device, dtype=dtype), device)
    if args.compile:
        largest = max(int(b) for b in args.batches.split(","))
        options = CompileOptions(sizes=((size, size),), max_batch_size=largest, cache_dir=COMPILE_CACHE)
        compile_unet(pipe, options, max_samples=largest)
    print(
        f"{family}: UNet {params_count / 1e6:.1f} M parameters, {flops / 1e12:.4f} TFLOP per forward at "
        f"{size} px (counted); whole pipeline {count_parameters(pipe.unet) + count_parameters(pipe.vae):,} "
        f"UNet+VAE parameters, {dtype}, built in {time.perf_counter() - started:.1f} s"
    )
    rows: list[list[object]] = []
    for batch in (int(b) for b in args.batches.split(",")):
        try:
            params = job_params(batch, args.steps, size)
            results = run_paths(pipe, params, device, args.repeats, raw=not args.no_raw)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append([family, size, batch, "out of memory", "", "", "", ""])
            continue
        rows += rows_for(family, size, args.steps, flops, batch, results, args.peak_tflops)
    del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def print_counts(args: argparse.Namespace) -> None:
    rows = []
    for family in args.families.split(","):
        size = TINY_SIZE[family] if args.tiny else NATIVE_SIZE[family]
        params, flops = count_unet_flops(family, args.tiny, size)
        reference = "" if args.tiny else f"{UNET_TFLOP[family]:.2f}"
        rows.append([family, size, f"{params:,}", f"{flops / 1e12:.4f}", reference])
    print_table(["UNet", "px", "parameters", "TFLOP per forward (counted)", "REFERENCE.md"], rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.steps = args.steps or (2 if args.tiny else 25)
    diffusers_logging.set_verbosity_error()  # not the fp32-upcast notice of every cast and every SDXL decode
    device = torch.device(args.device)
    print_header("Worker inference on the GPU", "benchmarks.gpu", argv)
    if args.count_only:
        print_counts(args)
        return
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu --tiny, or --count-only")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {name}; torch {torch.__version__}; {args.steps} steps, DDIM, guidance 7.5 (2 UNet "
        f"passes per step), strength 1.0; MFU against {args.peak_tflops:g} TFLOP/s; UNet "
        f"{'compiled (torch.compile, inductor)' if args.compile else 'eager'}\n"
    )
    rows = [row for family in args.families.split(",") for row in bench_family(family, args, device)]
    print()
    print_table(["model", "px", "batch", "path", "ms/image", "images/s", "image-steps/s", "MFU"], rows)
    print(
        "worker = worker.engine.inference.inpaint over DiffusersInpainter (the service's inference, without\n"
        "queue or storage); raw = the pipeline called directly; worker / raw is the ratio of images/s."
    )


if __name__ == "__main__":
    main()
