"""The baseline of service_vs_raw: a plain loop calling a diffusers inpainting pipeline in one process.

What a user would write instead of running the service: load the pipeline once
(`from_pretrained`, on the worker's device and dtype), pick the scheduler, and call
it once per image with the same parameters the service's jobs carry. It prints
one JSON line: the seconds of each call after one unmeasured warm-up call, and
the CPU seconds (all threads) those calls took.

It runs as its own process so that it gets the same environment (threads,
OMP_* variables) as the service's worker, and leaves the benchmark process free of torch.

    .venv/bin/python -m benchmarks.raw_loop DIR --images 8 --steps 4 --size 64
"""

from __future__ import annotations

import argparse
import json
import time

import diffusers
import torch
from diffusers import StableDiffusionInpaintPipeline

from tests.support.images import box_mask, scene
from worker.engine.diffusion import dtype_for, resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks.raw_loop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", help="a pipeline written with save_pretrained")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--scheduler", default="DDIMScheduler", help="diffusers class name")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device("auto")
    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        args.directory, dtype=dtype_for(device), safety_checker=None, requires_safety_checker=False
    )
    pipe = pipe.to(device)
    pipe.scheduler = getattr(diffusers, args.scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image, mask = scene((args.size, args.size)), box_mask((args.size, args.size))
    seconds, cpu_started = [], 0.0
    for i in range(args.images + 1):
        if i == 1:
            cpu_started = time.process_time()  # after the warm-up call
        started = time.perf_counter()
        pipe(
            prompt="a red apple",
            image=image,
            mask_image=mask,
            width=args.size,
            height=args.size,
            strength=args.strength,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=torch.Generator("cpu").manual_seed(args.seed + i),
            output_type="pil",
        )
        seconds.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_started
    print(
        json.dumps(
            {"seconds": seconds[1:], "cpu_seconds": cpu, "warmup": seconds[0], "threads": torch.get_num_threads()}
        )
    )


if __name__ == "__main__":
    main()
