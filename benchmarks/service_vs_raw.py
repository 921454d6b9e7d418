"""Images per second through the whole service against a plain diffusers loop, same model, same run.

The raw loop (benchmarks.raw_loop, its own process) runs first and again last, so
that a change in the machine's load during the run shows as a difference between
the two. In between, the service (API and one solo worker, started here) gets
`--images` jobs of one image each with `--inflight` clients, so the worker always
has the next job waiting; its rate is images / (last COMPLETED seen - first submit sent).
Every job and every raw call uses the same pipeline directory, size, steps,
guidance (7.5), strength (1.0) and scheduler (DDIM). `--env` variables go to both
the worker and the raw loop.

    .venv/bin/python -m benchmarks.service_vs_raw                        # tiny pipeline, about 2 minutes
    .venv/bin/python -m benchmarks.service_vs_raw --env OMP_WAIT_POLICY=PASSIVE
    .venv/bin/python -m benchmarks.service_vs_raw --model sd15-random --images 4   # SD1.5 shapes, 128 px
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks.jobs import JobTiming, drive_jobs, job_body
from benchmarks.report import ms, print_header, print_table
from benchmarks.topology import TINY_SLUG, TOPOLOGIES, running_servers, running_stack, write_tiny_model
from tests.support.stack import BIN

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZE = {"tiny": 64, "sd15-random": 128}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.service_vs_raw", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(DEFAULT_SIZE), default="tiny")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="embedded")
    parser.add_argument("--images", type=int, default=16, help="images per measured run (default: 16)")
    parser.add_argument("--inflight", type=int, default=4, help="service jobs in flight (default: 4)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (default: 4)")
    parser.add_argument("--size", type=int, help="picture side (default: 64 tiny, 128 sd15-random)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of the worker and the raw loop, e.g. OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--poll", type=float, default=0.02, help="client poll interval (default: 0.02)")
    return parser.parse_args(argv)


def write_sd15_random(directory: Path) -> Path:
    """A random-weight pipeline with SD 1.5 inpainting's shapes (benchmarks.architectures), saved in fp16."""
    import torch

    from benchmarks.architectures import build_pipeline

    pipe = build_pipeline("sd15", tiny=False, device=torch.device("cpu"), dtype=torch.float16)
    pipe.save_pretrained(directory)
    return directory


def run_raw(directory: Path, args: argparse.Namespace, env: dict[str, str]) -> list[float]:
    argv = [str(BIN / "python"), "-m", "benchmarks.raw_loop", str(directory), "--images", str(args.images),
            "--steps", str(args.steps), "--size", str(args.size)]
    result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                            check=True)
    return list(json.loads(result.stdout.strip().splitlines()[-1])["seconds"])


def run_service(directory: Path, args: argparse.Namespace, env: dict[str, str]) -> list[JobTiming]:
    body = job_body({"num_inference_steps": args.steps, "seed": 7, "guidance_scale": 7.5, "strength": 1.0,
                     "scheduler": "DDIM", "img_width": args.size, "img_height": args.size}, args.size)
    models = {TINY_SLUG: directory}
    with tempfile.TemporaryDirectory(prefix="iq-svr-") as tmp, \
            running_servers(args.topology == "real") as servers, \
            running_stack(args.topology, Path(tmp), servers, models=models, extra_env=env) as stack:

        def drive(total: int, inflight: int) -> list[JobTiming]:
            return asyncio.run(drive_jobs("127.0.0.1", stack.port, stack.user_key, TINY_SLUG, body,
                                          total=total, inflight=inflight, fast=args.poll, slow=0.25))

        drive(1, 1)  # warm-up: the worker loads the pipeline on its first job
        return drive(args.images, args.inflight)


def summarize(raw_before: list[float], raw_after: list[float], timings: list[JobTiming]) -> None:
    service_span = max(t.seen for t in timings) - min(t.sent for t in timings)
    worker_span = max(t.finished for t in timings) - min(t.started for t in timings)
    rows = []
    for label, seconds in (("raw loop (before)", raw_before), ("raw loop (after)", raw_after)):
        rows.append([label, len(seconds), f"{sum(seconds):.2f}", f"{len(seconds) / sum(seconds):.2f}",
                     ms(statistics.median(seconds))])
    inference = [t.inference for t in timings]
    rows.append(["service (submit → COMPLETED seen)", len(timings), f"{service_span:.2f}",
                 f"{len(timings) / service_span:.2f}", ms(service_span / len(timings))])
    rows.append(["  of which the worker's inference", len(timings), f"{sum(inference):.2f}",
                 f"{len(timings) / sum(inference):.2f}", ms(statistics.median(inference))])
    print_table(["run", "images", "seconds", "images/s", "ms per image (median)"], rows)
    raw_rate = (len(raw_before) + len(raw_after)) / (sum(raw_before) + sum(raw_after))
    service_rate = len(timings) / service_span
    print(f"ratio service / raw loop: {service_rate / raw_rate:.3f} (target >= 0.95 with batching off)")
    print(f"the worker was inferring {100 * sum(inference) / worker_span:.0f}% of the time from its first "
          f"claim to its last COMPLETED; the raw loops differ by "
          f"{100 * abs(sum(raw_after) - sum(raw_before)) / sum(raw_before):.0f}% (machine load drift)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.size = args.size or DEFAULT_SIZE[args.model]
    print_header("Service vs raw diffusers loop", "benchmarks.service_vs_raw", argv)
    env = dict(item.split("=", 1) for item in args.env)
    print(f"model: {args.model}, {args.size}x{args.size} px, {args.steps} steps, DDIM, guidance 7.5, 1 image "
          f"per call/job; topology {args.topology}, {args.inflight} jobs in flight; env {env or 'none'}")
    print("the service's API, worker and this client share the machine's cores; the raw loop runs alone\n")
    with tempfile.TemporaryDirectory(prefix="iq-svr-model-") as root:
        directory = Path(root) / args.model
        if args.model == "tiny":
            write_tiny_model(directory)
        else:
            write_sd15_random(directory)
        raw_before = run_raw(directory, args, env)
        timings = run_service(directory, args, env)
        raw_after = run_raw(directory, args, env)
    summarize(raw_before, raw_after, timings)


if __name__ == "__main__":
    main()
