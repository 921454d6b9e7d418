"""Orchestration overhead per job: wall time from submit until a poll sees COMPLETED, minus inference.

For each topology (and, for the embedded one, each broker polling interval) it
starts the servers and the service (API and one inference worker), warms the
worker up (the tiny pipeline is loaded by the first job), then drives `--jobs`
jobs of each model at each number of jobs in flight, polling like a considerate
client (`benchmarks.jobs`). It prints:

- overhead = wall - metrics.inference_time, p50/p99 (with several jobs in flight
  the wall time includes waiting behind the others: the service runs one job at a
  time per worker, so the per-job figure under load is the worker's cycle below);
- where it goes, from the service's own timestamps on the same clock: API work
  before the row is committed, queue (publish, broker delivery, claim), the worker's
  time besides inference (inputs, PNG encode, upload, status writes), and visible
  (finished_at until a poll saw COMPLETED);
- the gap from the end of inference to COMPLETED being seen, as bounds: at least
  `visible`, at most seen - (started_at + inference_time);
- with jobs waiting, the worker's cycle per job beyond inference (finished_at of
  consecutive jobs, minus inference_time);
- for the embedded broker, the idle worker's CPU at each polling interval.

    .venv/bin/python -m benchmarks.overhead                          # defaults: a few minutes
    .venv/bin/python -m benchmarks.overhead --topologies embedded --models erase --inflight 1 \\
        --broker-polling 0.01,0.05,0.5,1.0                           # the polling-interval study
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from benchmarks.jobs import JobTiming, drive_jobs, job_body, steady_cycles
from benchmarks.probes import probe_stores
from benchmarks.report import CpuMeter, ms, p50_p99_ms, percentile, print_header, print_table
from benchmarks.topology import (
    TINY_SLUG,
    TOPOLOGIES,
    Servers,
    running_servers,
    running_stack,
    write_tiny_model,
)
from tests.support.stack import Stack

MODELS = {"erase": "erase", "tiny": TINY_SLUG}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks.overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES), help="default: %(default)s")
    parser.add_argument("--models", default="erase,tiny", help="erase and/or tiny (default: %(default)s)")
    parser.add_argument("--inflight", default="1,8", help="jobs in flight (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=20, help="jobs per model and level (default: 20)")
    parser.add_argument("--steps", type=int, default=2, help="tiny pipeline steps (default: 2)")
    parser.add_argument("--size", type=int, default=64, help="picture side in pixels (default: 64)")
    parser.add_argument(
        "--poll",
        type=float,
        default=0.01,
        help="client poll interval of a job that is PROCESSING or next (default: 0.01 s)",
    )
    parser.add_argument(
        "--poll-slow",
        type=float,
        default=0.25,
        help="client poll interval of a job with others ahead (default: 0.25 s)",
    )
    parser.add_argument(
        "--broker-polling",
        default="0.05",
        help="INPAINT_BROKER_POLLING_INTERVAL values, embedded topology (default: 0.05)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more environment for the service's processes, e.g. OMP_WAIT_POLICY=PASSIVE",
    )
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle-CPU measure (default: 3)")
    return parser.parse_args(argv)


def model_params(model: str, args: argparse.Namespace) -> dict[str, object]:
    return {"num_inference_steps": args.steps, "seed": 7} if model == "tiny" else {}


def drive(stack: Stack, model: str, args: argparse.Namespace, *, total: int, inflight: int) -> list[JobTiming]:
    body = job_body(model_params(model, args), args.size)
    return asyncio.run(
        drive_jobs(
            "127.0.0.1",
            stack.port,
            stack.user_key,
            MODELS[model],
            body,
            total=total,
            inflight=inflight,
            fast=args.poll,
            slow=args.poll_slow,
        )
    )


PARTS = (
    lambda t: t.created - t.sent,  # API work before the row is committed
    lambda t: t.queued,
    lambda t: t.worker_other,
    lambda t: t.visible,
    lambda t: t.gap_upper,
)


def span_of(timings: list[JobTiming]) -> float:
    return max(t.seen for t in timings) - min(t.sent for t in timings)


def judge(value: float, target: float) -> str:
    return f"target <= {target:g}: " + ("met" if value <= target else f"missed by {value - target:.1f} ms")


def format_pair(values: list[float]) -> str:
    p50, p99 = p50_p99_ms(values)
    return f"{p50} / {p99}"


def idle_worker_cores(stack: Stack, seconds: float) -> float:
    meter = CpuMeter({"worker": {stack.procs["worker"].pid}})
    meter.start(time.perf_counter())
    time.sleep(seconds)
    return meter.stop(time.perf_counter())["worker"]


class Results:
    """Rows of the printed tables, one per (topology, broker polling, model, jobs in flight)."""

    def __init__(self) -> None:
        self.overhead: list[list[object]] = []
        self.parts: list[list[object]] = []
        self.cycles: list[list[object]] = []
        self.polling: list[list[object]] = []
        self.probes: list[list[object]] = []
        self.targets: list[str] = []

    def add(self, label: list[object], timings: list[JobTiming]) -> None:
        over = [t.overhead for t in timings]
        self.overhead.append(
            [
                *label,
                len(timings),
                ms(percentile([t.wall for t in timings], 50)),
                ms(percentile([t.inference for t in timings], 50)),
                *p50_p99_ms(over),
            ]
        )
        self.parts.append([*label, *(format_pair([part(t) for t in timings]) for part in PARTS)])
        cycles = steady_cycles(timings)
        if len(cycles) >= 2:
            self.cycles.append([*label, len(cycles), *p50_p99_ms(cycles), f"{len(timings) / span_of(timings):.1f}"])
        if label[0] == "real" and label[3] == 1:
            p50, p99 = 1000 * percentile(over, 50), 1000 * percentile(over, 99)
            self.targets.append(
                f"- real, {label[2]}, 1 in flight: overhead p50 {p50:.1f} ms "
                f"({judge(p50, 15)}), p99 {p99:.1f} ms ({judge(p99, 50)})"
            )

    def print(self) -> None:
        label = ["topology", "broker poll s", "model", "in flight"]
        print("## Overhead per job = wall (submit → COMPLETED seen) - inference_time")
        print_table(
            [*label, "n", "wall p50 ms", "inference p50 ms", "overhead p50 ms", "overhead p99 ms"], self.overhead
        )
        print("## Where it goes, p50 / p99 ms")
        print("(the gap from inference end to COMPLETED seen lies between `visible` and `gap ≤`)")
        print_table(
            [*label, "API before commit", "queue", "worker besides inference", "visible (gap ≥)", "gap ≤"], self.parts
        )
        if self.cycles:
            print("## Under load: the worker's cycle per job beyond inference (jobs that waited), ms")
            print_table([*label, "n", "p50", "p99", "jobs/s"], self.cycles)
        if self.polling:
            print("## Embedded broker polling: idle worker CPU, and the queue time of the first row's jobs")
            print_table(
                ["broker poll s", "idle worker cores", "queue p50 ms", "queue p99 ms", "overhead p50 ms"], self.polling
            )
        if self.probes:
            print("## Round trips of the stores, from the benchmark process (service code, service settings)")
            print_table(["topology", "store", "operation", "p50 ms", "p99 ms"], self.probes)
        if self.targets:
            print("## Targets of issue 7\n" + "\n".join(self.targets) + "\n")


def measure_stack(
    args: argparse.Namespace, results: Results, topology: str, polling: float, servers: Servers | None, tiny_dir: Path
) -> None:
    models = [m for m in args.models.split(",") if m]
    levels = [int(n) for n in args.inflight.split(",")]
    extra = dict(item.split("=", 1) for item in args.env)
    if topology == "embedded":
        extra["INPAINT_BROKER_POLLING_INTERVAL"] = str(polling)
    models_dir = {TINY_SLUG: tiny_dir}
    with (
        tempfile.TemporaryDirectory(prefix=f"iq-overhead-{topology}-") as tmp,
        running_stack(topology, Path(tmp), servers, models=models_dir, extra_env=extra) as stack,
    ):
        for model in models:
            drive(stack, model, args, total=2, inflight=1)  # warm-up: loads the pipeline, not measured
        time.sleep(1.0)
        idle = idle_worker_cores(stack, args.idle) if topology == "embedded" else None
        for model in models:
            for inflight in levels:
                timings = drive(stack, model, args, total=args.jobs, inflight=inflight)
                label: list[object] = [topology, polling if topology == "embedded" else "-", model, inflight]
                results.add(label, timings)
                if idle is not None and model == models[0] and inflight == levels[0]:
                    queued = [t.queued for t in timings]
                    results.polling.append(
                        [polling, f"{idle:.3f}", *p50_p99_ms(queued), ms(percentile([t.overhead for t in timings], 50))]
                    )
        if topology not in {row[0] for row in results.probes}:
            results.probes += probe_stores(stack)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_header("Orchestration overhead", "benchmarks.overhead", argv)
    print(
        f"jobs: {args.jobs} per row, {args.size}x{args.size} px, tiny pipeline {args.steps} steps; the "
        f"client polls every {args.poll} s when PROCESSING or next, {args.poll_slow} s otherwise; "
        "one solo worker."
    )
    print("the client runs on this machine's cores beside the service (2 cores shared by everything)\n")
    topologies = [t for t in args.topologies.split(",") if t]
    results = Results()
    with tempfile.TemporaryDirectory(prefix="iq-tiny-") as tiny_root, running_servers("real" in topologies) as servers:
        tiny_dir = write_tiny_model(Path(tiny_root) / "tiny-sd")
        for topology in topologies:
            embedded = topology == "embedded"
            intervals = [float(v) for v in args.broker_polling.split(",")] if embedded else [0.0]
            for polling in intervals:
                measure_stack(args, results, topology, polling, servers, tiny_dir)
    results.print()


if __name__ == "__main__":
    main()
