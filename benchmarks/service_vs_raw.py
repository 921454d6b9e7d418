"""Images per second through the whole service against a plain diffusers loop, same model, same run.

The service (API and one solo worker) is started once. Then, in each of `--rounds`
paired rounds, the raw loop (benchmarks.raw_loop, its own process) makes
`--images` images while the service idles, and right after it the service gets
`--images` jobs of one image each from `--inflight` clients, so that its worker
always has the next job waiting; the service's rate is images / (last COMPLETED
seen - first submit sent). Pairing the rounds keeps a change in the machine's
load from landing on one side only; each round prints its own ratio.
Every job and every raw call uses the same pipeline directory, size, steps,
guidance (7.5), strength (1.0) and scheduler (DDIM). `--env` variables go to both
the worker and the raw loop.

    .venv/bin/python -m benchmarks.service_vs_raw                        # tiny pipeline, a few minutes
    .venv/bin/python -m benchmarks.service_vs_raw --env OMP_WAIT_POLICY=PASSIVE
    .venv/bin/python -m benchmarks.service_vs_raw --model sd15-random --images 2   # SD1.5 shapes, 128 px
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.jobs import JobTiming, drive_jobs, job_body
from benchmarks.report import CpuMeter, ms, print_header, print_table
from benchmarks.topology import (
    TINY_SLUG,
    TOPOLOGIES,
    running_servers,
    running_stack,
    stack_pids,
    write_tiny_model,
)
from tests.support.stack import BIN

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZE = {"tiny": 64, "sd15-random": 128}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks.service_vs_raw", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(DEFAULT_SIZE), default="tiny")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="embedded")
    parser.add_argument("--images", type=int, default=6, help="images per side and round (default: 6)")
    parser.add_argument("--rounds", type=int, default=3, help="paired raw/service rounds (default: 3)")
    parser.add_argument("--inflight", type=int, default=4, help="service jobs in flight (default: 4)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (default: 4)")
    parser.add_argument("--size", type=int, help="picture side (default: 64 tiny, 128 sd15-random)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the worker and the raw loop, e.g. OMP_WAIT_POLICY=PASSIVE",
    )
    parser.add_argument("--poll", type=float, default=0.02, help="client poll interval (default: 0.02)")
    return parser.parse_args(argv)


def write_sd15_random(directory: Path) -> Path:
    """A random-weight pipeline with SD 1.5 inpainting's shapes (benchmarks.architectures), saved in fp16."""
    import torch

    from benchmarks.architectures import build_pipeline

    pipe = build_pipeline("sd15", tiny=False, device=torch.device("cpu"), dtype=torch.float16)
    pipe.save_pretrained(directory)
    return directory


def run_raw(directory: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[list[float], float]:
    """(seconds per image, CPU seconds of them all) of one raw loop."""
    argv = [
        str(BIN / "python"),
        "-m",
        "benchmarks.raw_loop",
        str(directory),
        "--images",
        str(args.images),
        "--steps",
        str(args.steps),
        "--size",
        str(args.size),
    ]
    result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return list(report["seconds"]), float(report["cpu_seconds"])


def run_rounds(directory: Path, args: argparse.Namespace, env: dict[str, str]) -> list[Round]:
    """Start the service once; then, per round, the raw loop (service idle) and the service (no raw loop)."""
    body = job_body(
        {
            "num_inference_steps": args.steps,
            "seed": 7,
            "guidance_scale": 7.5,
            "strength": 1.0,
            "scheduler": "DDIM",
            "img_width": args.size,
            "img_height": args.size,
        },
        args.size,
    )
    models = {TINY_SLUG: directory}
    with (
        tempfile.TemporaryDirectory(prefix="iq-svr-") as tmp,
        running_servers(args.topology == "real") as servers,
        running_stack(args.topology, Path(tmp), servers, models=models, extra_env=env) as stack,
    ):

        def drive(total: int, inflight: int) -> list[JobTiming]:
            return asyncio.run(
                drive_jobs(
                    "127.0.0.1",
                    stack.port,
                    stack.user_key,
                    TINY_SLUG,
                    body,
                    total=total,
                    inflight=inflight,
                    fast=args.poll,
                    slow=0.25,
                )
            )

        def measured_drive() -> tuple[list[JobTiming], float]:
            roles = {**(servers.pids if servers else {}), **stack_pids(stack), "client": {os.getpid()}}
            meter = CpuMeter(roles)
            meter.start(started := time.perf_counter())
            jobs = drive(args.images, args.inflight)
            cores = meter.stop(now := time.perf_counter())
            return jobs, sum(v for k, v in cores.items() if k != "others") * (now - started)

        drive(1, 1)  # warm-up: the worker loads the pipeline on its first job
        return [Round(*run_raw(directory, args, env), *measured_drive()) for _ in range(args.rounds)]


@dataclass
class Round:
    """One raw loop and, right after it, one service run of the same number of images."""

    raw: list[float]
    raw_cpu: float
    jobs: list[JobTiming]
    service_cpu: float
    """CPU seconds of every process of the service (and its client) while it made the round's images."""

    @property
    def raw_rate(self) -> float:
        return len(self.raw) / sum(self.raw)

    @property
    def service_rate(self) -> float:
        return len(self.jobs) / (max(t.seen for t in self.jobs) - min(t.sent for t in self.jobs))

    @property
    def busy(self) -> float:
        """Share of the worker's time, first claim to last COMPLETED, spent inferring."""
        span = max(t.finished for t in self.jobs) - min(t.started for t in self.jobs)
        return sum(t.inference for t in self.jobs) / span


def summarize(rounds: list[Round]) -> None:
    rows = []
    for number, r in enumerate(rounds, 1):
        inference = statistics.median(t.inference for t in r.jobs)
        rows.append(
            [
                number,
                len(r.raw),
                f"{r.raw_rate:.3f}",
                ms(statistics.median(r.raw)),
                f"{r.service_rate:.3f}",
                ms(inference),
                f"{100 * r.busy:.0f}%",
                f"{r.service_rate / r.raw_rate:.3f}",
                f"{r.raw_cpu / len(r.raw):.2f}",
                f"{r.service_cpu / len(r.jobs):.2f}",
            ]
        )
    print_table(
        [
            "round",
            "images",
            "raw images/s",
            "raw ms/image (median)",
            "service images/s",
            "worker inference ms (median)",
            "worker inferring",
            "service / raw",
            "raw CPU s/image",
            "service CPU s/image",
        ],
        rows,
    )
    raw_rate = sum(len(r.raw) for r in rounds) / sum(sum(r.raw) for r in rounds)
    service_rate = sum(len(r.jobs) for r in rounds) / sum(len(r.jobs) / r.service_rate for r in rounds)
    ratios = sorted(r.service_rate / r.raw_rate for r in rounds)
    print(
        f"all rounds: raw {raw_rate:.3f} images/s, service {service_rate:.3f} images/s, ratio "
        f"{service_rate / raw_rate:.3f} (median of the rounds' ratios {statistics.median(ratios):.3f}); "
        "target >= 0.95 with batching off"
    )
    raw_cpu = sum(r.raw_cpu for r in rounds) / sum(len(r.raw) for r in rounds)
    service_cpu = sum(r.service_cpu for r in rounds) / sum(len(r.jobs) for r in rounds)
    print(
        f"CPU per image (all threads; the service's API, worker, stores and client together): raw "
        f"{raw_cpu:.2f} s, service {service_cpu:.2f} s, ratio {service_cpu / raw_cpu:.2f}. Other users'\n"
        "load stretches the wall-clock figures above; it changes the CPU seconds much less."
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.size = args.size or DEFAULT_SIZE[args.model]
    print_header("Service vs raw diffusers loop", "benchmarks.service_vs_raw", argv)
    env = dict(item.split("=", 1) for item in args.env)
    print(
        f"model: {args.model}, {args.size}x{args.size} px, {args.steps} steps, DDIM, guidance 7.5, 1 image "
        f"per call/job; topology {args.topology}, {args.inflight} jobs in flight; env {env or 'none'}"
    )
    print(
        "the raw loop runs while the service idles (its worker polls the broker); the service's API,\n"
        "worker and this client share the machine's cores\n"
    )
    with tempfile.TemporaryDirectory(prefix="iq-svr-model-") as root:
        directory = Path(root) / args.model
        if args.model == "tiny":
            write_tiny_model(directory)
        else:
            write_sd15_random(directory)
        rounds = run_rounds(directory, args, env)
    summarize(rounds)


if __name__ == "__main__":
    main()
