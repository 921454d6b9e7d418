"""Submit and status-poll throughput of the API, beside a bare FastAPI endpoint on the same machine.

For each topology (embedded: SQLite, local images, SQLite broker; real: PostgreSQL,
Redis, S3 via moto) it starts the servers and the service's processes, completes a
few `erase` jobs (to have COMPLETED jobs to poll), stops the inference worker so
that it takes no CPU from the API, and then runs closed-loop clients at each
concurrency: POST /v2/erase with a small picture, GET .../status of a COMPLETED
job, and GET .../status of a QUEUED job with the whole backlog ahead of it (the
queue_position count). The same clients then hit a bare FastAPI app (async and
sync routes, same bodies) under uvicorn, for the ratio.

The load generator (this process, one asyncio loop on raw sockets) shares the
machine's cores with every server; the `cores` column says who used them.

    .venv/bin/python -m benchmarks.api_throughput                     # defaults: about 3 minutes
    .venv/bin/python -m benchmarks.api_throughput --topologies real --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.jobs import job_body
from benchmarks.loadgen import Request, run_load
from benchmarks.report import CpuMeter, format_cores, p50_p99_ms, percentile, print_header, print_table
from benchmarks.topology import TOPOLOGIES, Servers, running_servers, running_stack, stack_pids
from tests.support.services import free_port, wait_for_port
from tests.support.stack import BIN, Stack

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks.api_throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES), help="default: %(default)s")
    parser.add_argument("--concurrency", default="1,16,64", help="client counts (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per phase (default: 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (default: 1)")
    parser.add_argument("--size", type=int, default=64, help="side of the submitted picture (default: 64)")
    parser.add_argument("--completed-jobs", type=int, default=16, help="COMPLETED jobs to poll (default: 16)")
    return parser.parse_args(argv)


class Phase:
    """Runs load phases against one server and collects the table's rows."""

    def __init__(
        self, args: argparse.Namespace, port: int, headers: dict[str, str], roles: dict[str, set[int]]
    ) -> None:
        self.args, self.port, self.headers = args, port, headers
        self.roles = {**roles, "generator": {os.getpid()}}
        self.rows: list[list[object]] = []
        self.rates: dict[tuple[str, int], Rate] = {}

    def run(
        self, label: str, next_request: Callable[[int], Request], concurrency: int, keep_bodies: bool = False
    ) -> list[bytes]:
        meter = CpuMeter(self.roles)
        meter.start(time.perf_counter())
        result = asyncio.run(
            run_load(
                HOST,
                self.port,
                next_request,
                concurrency=concurrency,
                duration=self.args.duration,
                warmup=self.args.warmup,
                headers=self.headers,
                keep_bodies=keep_bodies,
            )
        )
        cores = meter.stop(time.perf_counter())
        server = sum(v for role, v in cores.items() if role not in ("generator", "others"))
        cpu_ms = 1000 * server / result.rate if result.rate else float("nan")
        p50, p99 = p50_p99_ms(result.latencies)
        self.rows.append(
            [
                label,
                concurrency,
                f"{result.rate:.0f}",
                p50,
                p99,
                result.errors,
                f"{result.overrun:.1f}",
                f"{cpu_ms:.2f}",
                format_cores(cores),
            ]
        )
        self.rates[(label, concurrency)] = Rate(result.rate, 1000 * percentile(result.latencies, 99), cpu_ms)
        return result.bodies


@dataclass(frozen=True)
class Rate:
    """Requests per second, p99 in ms, and the server's CPU milliseconds per request."""

    per_second: float
    p99_ms: float
    cpu_ms: float


def measure_bare(args: argparse.Namespace, levels: list[int], body: bytes) -> Phase:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "benchmarks.bare_app", "--port", str(port)],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        phase = Phase(args, port, {}, {"bare": {proc.pid}})
        for prefix, kind in (("", "async"), ("/sync", "sync")):
            for c in levels:
                phase.run(f"bare {kind}: POST /v2/erase", lambda i, p=prefix: ("POST", f"{p}/v2/erase", body), c)
            for c in levels:
                phase.run(
                    f"bare {kind}: GET status", lambda i, p=prefix: ("GET", f"{p}/v2/requests/{i}/status", b""), c
                )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return phase


def complete_some(stack: Stack, body: dict[str, Any], count: int) -> list[str]:
    ids = [stack.submit("erase", body) for _ in range(count)]
    for job_id in ids:
        assert stack.wait(job_id, timeout=300)["status"] == "COMPLETED"
    return ids


def measure_topology(
    args: argparse.Namespace, topology: str, servers: Servers | None, levels: list[int], body: bytes
) -> Phase:
    with (
        tempfile.TemporaryDirectory(prefix=f"iq-api-{topology}-") as tmp,
        running_stack(topology, Path(tmp), servers) as stack,
    ):
        completed = complete_some(stack, json.loads(body), args.completed_jobs)
        stack.stop("worker")  # from here on the queue only grows; the worker would compete for the CPU
        phase = Phase(
            args, stack.port, {"x-api-key": stack.user_key}, {**(servers.pids if servers else {}), **stack_pids(stack)}
        )
        queued: list[str] = []
        for c in levels:
            bodies = phase.run(
                f"{topology}: POST /v2/erase", lambda i: ("POST", "/v2/erase", body), c, keep_bodies=True
            )
            queued += [json.loads(b)["request_id"] for b in bodies]
        for c in levels:
            phase.run(
                f"{topology}: GET status (COMPLETED)",
                lambda i: ("GET", f"/v2/requests/{completed[i % len(completed)]}/status", b""),
                c,
            )
        newest = queued[-100:]
        for c in levels:
            phase.run(
                f"{topology}: GET status (QUEUED, ~{len(queued)} ahead)",
                lambda i: ("GET", f"/v2/requests/{newest[i % len(newest)]}/status", b""),
                c,
            )
    return phase


def print_ratios(bare: Phase, measured: list[Phase]) -> None:
    """Submit against the bare POST, by req/s (this run's machine) and by CPU per request (load-proof)."""
    print("## Submit against the bare endpoint (target at 64 clients: >= 40% of its req/s, p99 < 100 ms)")
    for phase in measured:
        for (label, c), rate in phase.rates.items():
            if "POST" not in label:
                continue
            for kind in ("async", "sync"):
                ref = bare.rates[(f"bare {kind}: POST /v2/erase", c)]
                share = 100 * rate.per_second / ref.per_second
                print(
                    f"- {label}, {c} clients: {rate.per_second:.0f}/s = {share:.1f}% of bare {kind} "
                    f"({ref.per_second:.0f}/s); "
                    f"by server CPU per request {100 * ref.cpu_ms / rate.cpu_ms:.1f}% "
                    f"({rate.cpu_ms:.2f} ms vs {ref.cpu_ms:.2f} ms); p99 {rate.p99_ms:.0f} ms"
                )
    print()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_header("API throughput", "benchmarks.api_throughput", argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    topologies = [t for t in args.topologies.split(",") if t]
    body = job_body({}, args.size)
    print(f"submit body: erase, {args.size}x{args.size} PNG picture and mask, {len(body)} bytes of JSON")
    print("the load generator runs on this machine's cores beside the servers (see the cores column)\n")
    bare = measure_bare(args, levels, body)
    phases = []
    with running_servers("real" in topologies) as servers:
        for topology in topologies:
            phases.append(measure_topology(args, topology, servers, levels, body))
    headers = [
        "route",
        "clients",
        "req/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "overrun s",
        "server CPU ms/req",
        "cores used",
    ]
    print_table(headers, [row for phase in (bare, *phases) for row in phase.rows])
    print(
        "failed: answers that were not 2xx, or none within 60 s, over the whole phase;\n"
        "overrun: how long the phase waited past its window for the last answers (stuck requests);\n"
        "cores used: CPU of each process over the phase (1.00 = one core busy), generator = this load\n"
        "generator, others = the rest of the machine (other users included); server CPU ms/req: the\n"
        "servers' CPU (API, database, broker, S3; not the generator) per answered request.\n"
    )
    print_ratios(bare, phases)


if __name__ == "__main__":
    main()
