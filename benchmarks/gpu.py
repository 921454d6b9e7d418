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
denoising steps/s, model-FLOPs utilisation and the peak of the device memory allocated
during a call of that path and batch (`torch.cuda.max_memory_allocated`, reset per call):

    MFU = images/s x steps x 2 (guidance) x UNet FLOPs per forward / peak

with the UNet FLOPs counted on the meta device at the picture's size (0.80 TFLOP
for SD 1.5 at 512 px and 6.76 TFLOP for SDXL at 1024 px; VAE and text encoders
are not counted) and the peak a flag (989 TFLOP/s: H100 SXM dense bf16/fp16).

    .venv/bin/python -m benchmarks.gpu                                  # CUDA, full size, 25 steps
    .venv/bin/python -m benchmarks.gpu --peak-tflops 989 --batches 1,4,8 --families sd15
    .venv/bin/python -m benchmarks.gpu --device cpu --tiny              # proves the code path on a CPU
    .venv/bin/python -m benchmarks.gpu --count-only                     # parameters and FLOPs, any machine
    .venv/bin/python -m benchmarks.gpu --compile                        # UNet compiled (worker.engine.compiling)
    .venv/bin/python -m benchmarks.gpu --check                          # correctness: PASS/FAIL lines

Each batch's first call (the worker path, untimed) warms the shapes every path then uses;
with --compile it compiles the UNet for that shape (minutes on a GPU; seconds from the
cache in data/compile-cache on a later run): compare its rows with a run without it. Each
family's table is printed as soon as it is measured.

--check runs the worker's path on each family and prints a PASS or FAIL line per check,
exiting 1 on a FAIL: no NaN or inf leaves the text encoders, the UNet or the VAE; pixels
the mask keeps are the input's, bit for bit; the same job twice gives the same bytes; in
fp16, SDXL's VAE runs in float32 (its `force_upcast`); and each of BATCH_JOBS one-image
jobs run as one batched call matches its solo run within BATCH_TOLERANCE.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
from worker.engine.sdxl import SDXLInpainter

TINY_SIZE = {"sd15": 64, "sdxl": 128}
COMPILE_CACHE = Path("data/compile-cache")
HEADERS = ["model", "px", "batch", "path", "ms/image", "images/s", "image-steps/s", "MFU", "peak GiB"]
BATCH_JOBS = 3
BATCH_TOLERANCE = {torch.float32: (100.0, 2, 0.2), torch.float16: (99.9, 8, 1.0)}
"""Batched against solo, over the masked pixels, in 8-bit levels: (percentile, its limit, limit of the
mean). float32 (CPU): tests/worker/jobs/test_batch.py's bound (it takes the mean over the whole
picture, 4 times the masked area). float16 (CUDA): another batch runs other kernels, which round
differently, and the steps carry a difference on; the figures are printed whatever the verdict."""


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
    parser.add_argument("--check", action="store_true", help="correctness checks instead of timings; exit 1 on a FAIL")
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


@dataclass
class PathRuns:
    """The timed calls of one path at one batch."""

    seconds: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    """The most device memory allocated during any of them (0 on a CPU)."""

    def add(self, call: Callable[[], object], device: torch.device) -> None:
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        call()
        synchronize(device)
        self.seconds.append(time.perf_counter() - started)
        if device.type == "cuda":
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(device))


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


def batch_jobs(params: JobParams, count: int) -> list[JobParams]:
    """`count` one-image jobs that differ from `params` in prompt and seed only, as batching allows."""
    return [
        params.model_copy(update={"samples": 1, "seed": params.seed + i, "prompt": f"{params.prompt} {i}"})
        for i in range(count)
    ]


def run_paths(pipe: Any, params: JobParams, device: torch.device, repeats: int, raw: bool) -> dict[str, PathRuns]:
    """One untimed worker call to warm the batch's shapes, then each path timed alternately."""
    image, mask = scene((params.width, params.height)), box_mask((params.width, params.height))
    inpainter = DiffusersInpainter(pipe)

    def worker_call() -> object:
        return inpaint(inpainter, params, image, mask, on_step=lambda step, total: None)

    jobs = [(job, image, mask) for job in batch_jobs(params, params.samples)]

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
    worker_call()
    results = {name: PathRuns() for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            results[name].add(call, device)
    return results


def rows_for(
    family: str, size: int, steps: int, flops: float, batch: int, results: dict[str, PathRuns], peak: float
) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, runs in results.items():
        median = statistics.median(runs.seconds)
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
                f"{runs.peak_bytes / 2**30:.1f}" if runs.peak_bytes else "-",
            ]
        )
    if "raw" in results:
        ratio = statistics.median(results["raw"].seconds) / statistics.median(results["worker"].seconds)
        rows.append([family, size, batch, "worker / raw", "", f"{ratio:.3f}", "", "", ""])
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
        f"UNet+VAE parameters, {dtype}, built on {device.type} in {time.perf_counter() - started:.1f} s"
    )
    rows: list[list[object]] = []
    for batch in (int(b) for b in args.batches.split(",")):
        try:
            params = job_params(batch, args.steps, size)
            results = run_paths(pipe, params, device, args.repeats, raw=not args.no_raw)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append([family, size, batch, "out of memory", "", "", "", "", ""])
            continue
        rows += rows_for(family, size, args.steps, flops, batch, results, args.peak_tflops)
    return rows


def release(device: torch.device) -> None:
    """Give a dropped pipeline's memory back before the next family is built."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- --check -------------------------------------------------------------------


def tensors_in(value: object) -> Iterator[torch.Tensor]:
    """The floating-point tensors in a module's inputs or outputs (tensors, tuples, lists, ModelOutputs)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from tensors_in(item)


class Watch:
    """Hooks on a pipeline's text encoders, UNet and VAE halves: how often each ran, which ever put
    out a NaN or inf, and the dtypes each was fed."""

    def __init__(self, pipe: Any) -> None:
        candidates = {
            "text_encoder": getattr(pipe, "text_encoder", None),
            "text_encoder_2": getattr(pipe, "text_encoder_2", None),
            "unet": pipe.unet,
            "vae.encoder": pipe.vae.encoder,
            "vae.decoder": pipe.vae.decoder,
        }
        self.modules = {name: module for name, module in candidates.items() if module is not None}
        self.calls = dict.fromkeys(self.modules, 0)
        self.fed: dict[str, set[torch.dtype]] = {name: set() for name in self.modules}
        self.non_finite: set[str] = set()
        for name, module in self.modules.items():
            module.register_forward_pre_hook(self.before(name))
            module.register_forward_hook(self.after(name))

    def before(self, name: str) -> Callable[..., None]:
        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            self.fed[name].update(t.dtype for t in tensors_in(args))

        return hook

    def after(self, name: str) -> Callable[..., None]:
        def hook(_module: Any, _args: tuple[Any, ...], output: object) -> None:
            self.calls[name] += 1
            if not all(bool(torch.isfinite(t).all()) for t in tensors_in(output)):
                self.non_finite.add(name)

        return hook


def verdict(ok: bool, label: str, text: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {label}: {text}", flush=True)
    return ok


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def check_family(family: str, args: argparse.Namespace, device: torch.device) -> list[bool]:
    """Run the checks of the module docstring on one family; one PASS or FAIL line each."""
    size = TINY_SIZE[family] if args.tiny else NATIVE_SIZE[family]
    dtype = dtype_for(device)
    pipe = place_like_worker(build_pipeline(family, tiny=args.tiny, device=device, dtype=dtype), device)
    watch = Watch(pipe)
    inpainter = (SDXLInpainter if family == "sdxl" else DiffusersInpainter)(pipe)
    label = f"{family} {size} px {str(dtype).removeprefix('torch.')}"
    image, mask = scene((size, size)), box_mask((size, size))
    keep = np.asarray(mask) == 0

    def run(params: JobParams) -> list[Any]:
        return inpaint(inpainter, params, image, mask, on_step=lambda step, total: None)

    params = job_params(2, args.steps, size)
    first, again = run(params), run(params)
    jobs = batch_jobs(params, BATCH_JOBS)
    together = inpaint_batch(inpainter, [(job, image, mask) for job in jobs], on_step=lambda step, total: None)
    batched, solo = [images[0] for images in together], [run(job)[0] for job in jobs]

    ran = ", ".join(f"{name} x{count}" for name, count in watch.calls.items())
    results = [
        verdict(
            not watch.non_finite and all(watch.calls.values()),
            label,
            f"finite: no NaN or inf from {ran}"
            if not watch.non_finite
            else f"NaN or inf from {', '.join(sorted(watch.non_finite))} ({ran})",
        )
    ]
    outputs = [*first, *again, *batched, *solo]
    kept = sum(np.array_equal(pixels(out)[keep], pixels(image)[keep]) for out in outputs)
    results.append(
        verdict(
            kept == len(outputs),
            label,
            f"unmasked pixels: {kept} of {len(outputs)} images keep the input's {int(keep.sum()):,} bit for bit",
        )
    )
    same = [out.tobytes() for out in first] == [out.tobytes() for out in again]
    results.append(
        verdict(same, label, f"same seed: one job ({params.samples} images) twice, {'same' if same else 'other'} bytes")
    )
    results.append(compare_batched(label, dtype, batched, solo, ~keep))
    if family == "sdxl" and dtype == torch.float16:
        fed = {name: watch.fed[name] for name in ("vae.encoder", "vae.decoder")}
        results.append(
            verdict(
                all(dtypes == {torch.float32} for dtypes in fed.values()),
                label,
                f"VAE precision: force_upcast={pipe.vae.config.force_upcast}; fed "
                + ", ".join(f"{name} {sorted(str(d) for d in dtypes)}" for name, dtypes in fed.items()),
            )
        )
    return results


def compare_batched(label: str, dtype: torch.dtype, batched: list[Any], solo: list[Any], masked: np.ndarray) -> bool:
    """Each job's batched image against its solo one, over the masked pixels (BATCH_TOLERANCE); and
    two different jobs must differ by more than that, or the comparison could not fail."""
    percentile, limit, mean_limit = BATCH_TOLERANCE[dtype]
    diff = np.concatenate([np.abs(pixels(b)[masked] - pixels(s)[masked]) for b, s in zip(batched, solo, strict=True)])
    apart = float(np.abs(pixels(solo[0])[masked] - pixels(solo[1])[masked]).mean())
    at, mean = float(np.percentile(diff, percentile)), float(diff.mean())
    return verdict(
        at <= limit and mean <= mean_limit < apart,
        label,
        f"batched vs solo: {len(batched)} one-image jobs; masked pixels differ by p{percentile:g} {at:g} and mean "
        f"{mean:.3f} levels (allowed: {limit} and {mean_limit}); two different jobs differ by {apart:.1f}",
    )


def run_checks(args: argparse.Namespace, device: torch.device) -> int:
    results = []
    for family in args.families.split(","):
        results += check_family(family, args, device)
        release(device)
    failed = results.count(False)
    print(f"check: {'FAIL' if failed else 'PASS'} ({len(results) - failed} of {len(results)} passed)")
    return 1 if failed else 0


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
        f"{'compiled (torch.compile, inductor)' if args.compile else 'eager'}\n",
        flush=True,
    )
    if args.check:
        sys.exit(run_checks(args, device))
    for family in args.families.split(","):
        rows = bench_family(family, args, device)
        release(device)
        print()
        print_table(HEADERS, rows)
        sys.stdout.flush()
    print(
        "worker = worker.engine.inference.inpaint over DiffusersInpainter (the service's inference, without\n"
        "queue or storage); raw = the pipeline called directly; worker / raw is the ratio of images/s."
    )


if __name__ == "__main__":
    main()
