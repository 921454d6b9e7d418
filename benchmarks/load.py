"""Load: N submissions at concurrency C, then wait until every accepted job is terminal.

Prints accepted / rejected / lost / stuck counts and p50/p99 submit latency. A job is
*lost* if its status route ever answers 404 after it was accepted, and *stuck* if it
is not COMPLETED or FAILED by the deadline. Both must be 0.

    # against a running service
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8000 --key iq_... [-n 1000] [-c 50]
    # or start a private one: the embedded default, or Redis + PostgreSQL + S3 (moto)
    .venv/bin/python benchmarks/load.py --start embedded
    .venv/bin/python benchmarks/load.py --start production
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.images import box_mask, png_bytes, scene  # noqa: E402

TERMINAL = {"COMPLETED", "FAILED"}


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    rejected: Counter[int] = field(default_factory=Counter)
    final: dict[str, str] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    lost: set[str] = field(default_factory=set)


def body(model: str) -> dict[str, object]:
    image = base64.b64encode(png_bytes(scene((64, 64)))).decode()
    mask = base64.b64encode(png_bytes(box_mask((64, 64)))).decode()
    return {"prompt": "load test", "image": image, "mask": mask, "num_inference_steps": 2} | (
        {} if model == "erase" else {"img_width": 64, "img_height": 64}
    )


async def submit_all(client: httpx.AsyncClient, model: str, n: int, concurrency: int, out: Outcome) -> None:
    payload = body(model)
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            try:
                response = await client.post(f"/v2/{model}", json=payload)
            except httpx.HTTPError as exc:
                out.rejected[-1] += 1
                out.errors[type(exc).__name__] += 1
                return
            out.latencies.append(time.perf_counter() - started)
            if response.status_code == 200:
                out.accepted.append(response.json()["request_id"])
            else:
                out.rejected[response.status_code] += 1

    await asyncio.gather(*(one() for _ in range(n)))


async def wait_all(client: httpx.AsyncClient, out: Outcome, deadline: float) -> None:
    pending = set(out.accepted)
    gate = asyncio.Semaphore(32)

    async def poll(job_id: str) -> None:
        async with gate:
            response = await client.get(f"/v2/requests/{job_id}/status")
        if response.status_code == 404:
            out.lost.add(job_id)
        body = response.json()
        if body.get("status") in TERMINAL:
            out.final[job_id] = body["status"]
            if body["status"] == "FAILED":
                out.errors[body.get("error_code") or "?"] += 1
            pending.discard(job_id)

    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(poll(j) for j in list(pending)))
        if pending:
            await asyncio.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def run(url: str, key: str, model: str, n: int, concurrency: int, timeout: float) -> Outcome:
    out = Outcome()
    limits = httpx.Limits(max_connections=concurrency + 32)
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await submit_all(client, model, n, concurrency, out)
        submit_seconds = time.perf_counter() - started
        await wait_all(client, out, time.monotonic() + timeout)
        total_seconds = time.perf_counter() - started
    stuck = len(out.accepted) - len(out.final)
    print(f"submissions: {n} at concurrency {concurrency}, model {model}, {url}")
    print(f"accepted: {len(out.accepted)}  rejected: {sum(out.rejected.values())} {dict(out.rejected) or ''}")
    print(
        f"completed: {sum(1 for s in out.final.values() if s == 'COMPLETED')}  "
        f"failed: {sum(1 for s in out.final.values() if s == 'FAILED')} {dict(out.errors) or ''}"
    )
    print(f"lost: {len(out.lost)}  stuck: {stuck}")
    print(
        f"submit latency p50 {percentile(out.latencies, 50) * 1000:.1f} ms, "
        f"p99 {percentile(out.latencies, 99) * 1000:.1f} ms; {n / submit_seconds:.1f} submits/s; "
        f"all terminal after {total_seconds:.1f} s"
    )
    return out


def start_stack(kind: str) -> tuple[object, list[object], str, str]:
    """A private stack (and its services, for production) with a fresh key."""
    from tests.support.services import MotoServer, PostgresServer, RedisServer
    from tests.support.stack import Stack, stack_env

    servers: list[object] = []
    services: dict[str, str] = {}
    if kind == "production":
        redis, postgres, moto = RedisServer().start(), PostgresServer().start(), MotoServer().start()
        servers = [redis, postgres, moto]
        services = {
            "INPAINT_TEST_REDIS_URL": redis.url,
            "INPAINT_TEST_POSTGRES_URL": postgres.url(),
            "INPAINT_TEST_S3_ENDPOINT": moto.url,
        }
    workdir = Path(tempfile.mkdtemp(prefix=f"iq-load-{kind}-"))
    stack = Stack(name=kind, workdir=workdir, env=stack_env(kind, workdir, services))
    stack.start_all()
    return stack, servers, stack.base_url, stack.user_key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--start", choices=["embedded", "production"], help="start a private stack instead")
    parser.add_argument("-n", type=int, default=1000, help="submissions (default %(default)s)")
    parser.add_argument("-c", type=int, default=50, help="concurrency (default %(default)s)")
    parser.add_argument("--model", default="erase")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every job to end")
    args = parser.parse_args()
    if not args.start and not (args.url and args.key):
        parser.error("give --url and --key, or --start")
    stack, servers = None, []
    try:
        if args.start:
            stack, servers, args.url, args.key = start_stack(args.start)
        out = asyncio.run(run(args.url, args.key, args.model, args.n, args.c, args.timeout))
    finally:
        if stack is not None:
            stack.stop_all()  # type: ignore[attr-defined]
        for server in servers:
            server.stop()  # type: ignore[attr-defined]
    return 0 if not out.lost and len(out.final) == len(out.accepted) else 1


if __name__ == "__main__":
    sys.exit(main())
