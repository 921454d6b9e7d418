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
the worker and the raw loop. `--batch-sizes 1,8` runs the whole measurement once per
`INPAINT_MAX_BATCH_SIZE`, each with a worker of its own, and compares them at the end.
The API's admission limits are raised to ADMISSION, so that `--inflight` clients of one
key measure the service's images/s, not its 429s.

    .venv/bin/python -m benchmarks.service_vs_raw                        # tiny pipeline, a few minutes
    .venv/bin/python -m benchmarks.service_vs_raw --env OMP_WAIT_POLICY=PASSIVE
    .venv/bin/python -m benchmarks.service_vs_raw --model sd15-random --images 2   # SD1.5 shapes, 128 px
    .venv/bin/python -m benchmarks.service_vs_raw --model sd15-random --size 512 --steps 25 \
        --images 64 --inflight 64 --raw-images 16 --rounds 1 --batch-sizes 1,8   # on a GPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

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
ADMISSION = {"INPAINT_MAX_REQUESTS": "128", "INPAINT_MAX_REQUESTS_PER_KEY": "128"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks.service_vs_raw", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(DEFAULT_SIZE), default="tiny")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="embedded")
    parser.add_argument("--images", type=int, default=6, help="service images per round (default: 6)")
    parser.add_argument("--raw-images", type=int, help="raw loop images per round (default: --images)")
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
    parser.add_argument(
        "--batch-sizes",
        default="",
        help="INPAINT_MAX_BATCH_SIZE values, one worker each, e.g. 1,8 (default: as --env or the product says)",
    )
    parser.add_argument("--poll", type=float, default=0.02, help="client poll interval (default: 0.02)")
    parser.add_argument(
        "--slow-poll", type=float, default=0.25, help="poll interval while other jobs are ahead (default: 0.25)"
    )
    return parser.parse_args(argv)


def write_sd15_random(directory: Path) -> Path:
    """A random-weight pipeline with SD 1.5 inpainting's shapes (benchmarks.architectures), saved in fp16.
    Its weights are made on the GPU when there is one (seconds, against a minute on a CPU)."""
    import torch

    from benchmarks.architectures import build_pipeline

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    build_pipeline("sd15", tiny=False, device=device, dtype=torch.float16).save_pretrained(directory)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the worker and the raw loop get the memory this process cached
    return directory


def run_raw(directory: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[list[float], float]:
    """(seconds per image, CPU seconds of them all) of one raw loop."""
    argv = [
        str(BIN / "python"),
        "-m",
        "benchmarks.raw_loop",
        str(directory),
        "--images",
        str(args.raw_images),
        "--steps",
        str(args.steps),
        "--size",
        str(args.size),
    ]
    result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return list(report["seconds"]), float(report["cpu_seconds"])


def measure(
    directory: Path, args: argparse.Namespace, env: dict[str, str], batch_sizes: list[int | None]
) -> Iterator[tuple[int | None, list[Round]]]:
    """Start the service once; then, per batch size (None: as configured), a worker with that
    INPAINT_MAX_BATCH_SIZE and, per round, the raw loop (service idle) and the service (no raw loop)."""
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
                    slow=args.slow_poll,
                )
            )

        def measured_drive() -> tuple[list[JobTiming], float]:
            roles = {**(servers.pids if servers else {}), **stack_pids(stack), "client": {os.getpid()}}
            meter = CpuMeter(roles)
            meter.start(started := time.perf_counter())
            jobs = drive(args.images, args.inflight)
            cores = meter.stop(now := time.perf_counter())
            return jobs, sum(v for k, v in cores.items() if k != "others") * (now - started)

        for number, batch in enumerate(batch_sizes):
            if batch is not None:
                stack.env["INPAINT_MAX_BATCH_SIZE"] = str(batch)
            if number:  # the next setting: a new worker, the same API, database and broker
                stack.stop("worker")
                stack.start_worker()
            drive(1, 1)  # warm-up: the worker loads the pipeline on its first job
            yield batch, [Round(*run_raw(directory, args, env), *measured_drive()) for _ in range(args.rounds)]


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


def summarize(rounds: list[Round]) -> tuple[float, float]:
    """Print the rounds and their totals; (raw images/s, service images/s) of all rounds."""
    rows = []
    for number, r in enumerate(rounds, 1):
        inference = statistics.median(t.inference for t in r.jobs)
        rows.append(
            [
                number,
                len(r.raw),
                f"{r.raw_rate:.3f}",
                ms(statistics.median(r.raw)),
                len(r.jobs),
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
            "raw images",
            "raw images/s",
            "raw ms/image (median)",
            "jobs",
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
    return raw_rate, service_rate


def stop_on_term(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM (a timeout's) unwinds like Ctrl-C: the stack's processes, in sessions of their own, are
    stopped by the with-blocks instead of outliving this one."""
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.size = args.size or DEFAULT_SIZE[args.model]
    args.raw_images = args.raw_images or args.images
    signal.signal(signal.SIGTERM, stop_on_term)
    print_header("Service vs raw diffusers loop", "benchmarks.service_vs_raw", argv)
    env = dict(item.split("=", 1) for item in args.env)
    print(
        f"model: {args.model}, {args.size}x{args.size} px, {args.steps} steps, DDIM, guidance 7.5, 1 image "
        f"per call/job; topology {args.topology}, {args.images} jobs per round with {args.inflight} in flight, "
        f"{args.raw_images} raw images per round; env {env or 'none'}"
    )
    print(
        "the raw loop runs while the service idles (its worker polls the broker); the service's API,\n"
        "worker and this client share the machine's cores\n"
    )
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b] or [None]
    totals = []
    with tempfile.TemporaryDirectory(prefix="iq-svr-model-") as root:
        directory = Path(root) / args.model
        started = time.perf_counter()
        (write_tiny_model if args.model == "tiny" else write_sd15_random)(directory)
        print(f"model written in {time.perf_counter() - started:.1f} s\n", flush=True)
        for batch, rounds in measure(directory, args, {**ADMISSION, **env}, batch_sizes):
            print(f"## worker with INPAINT_MAX_BATCH_SIZE={batch or 'as configured'}\n")
            totals.append([batch or "-", *(f"{rate:.3f}" for rate in summarize(rounds))])
            print(flush=True)
    if len(totals) > 1:
        for row in totals:
            row.append(f"{float(row[2]) / float(row[1]):.3f}")
        print_table(["INPAINT_MAX_BATCH_SIZE", "raw images/s", "service images/s", "service / raw"], totals)


if __name__ == "__main__":
    main()
