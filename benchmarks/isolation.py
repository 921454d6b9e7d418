"""Can one key slow another's submits down? Key B's submit p99, quiet and while key A misbehaves.

For each topology (embedded; the real one too with --real) it starts the API with no
inference worker, so that every job stays QUEUED, and two keys, A and B. Key B runs
a closed loop of a few clients (plain POST /v2/erase, a small picture) for a few
seconds: quiet, then while key A

- holds 300 open event streams (GET /v2/requests/{id}/events), one on each of 300
  QUEUED jobs of its own (INPAINT_MAX_EVENT_STREAMS_PER_KEY is raised to 300 for the
  run, so that the streams are really open);
- keeps 60 submits in flight whose image URL answers one byte per second (a loopback
  server of this benchmark's; an A client submits again when answered, after
  Retry-After when that answer is a 429);
- holds 200 idle TCP connections to the API (nothing sent; one the server closes is
  opened again);

and quiet once more, which shows how far the shared machine drifted. B's p99 in each
case is divided by the first quiet one (target: at most 2x). Key A's answers are
counted by status; A's other per-key limits keep the product's defaults, so 429s are
expected.

On the real topology the database is then frozen while B submits: PostgreSQL's
postmaster and its backends are stopped (SIGSTOP) for 30 s, then continued
(SIGCONT). It prints when the first 503 came (target: within 5 s of the freeze), how
long each submit overlapping the freeze took, and when a submit succeeded again.

    .venv/bin/python -m benchmarks.isolation            # embedded: about 2 minutes
    .venv/bin/python -m benchmarks.isolation --real     # both topologies, and the frozen database
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.jobs import job_body, submit_jobs
from benchmarks.loadgen import CONNECTION_LOST, TIMED_OUT, Connection, LoadResult, run_load
from benchmarks.report import CpuMeter, format_cores, format_failures, p50_p99_ms, percentile, print_header, print_table
from benchmarks.topology import Servers, create_key, frozen_postgres, running_servers, running_stack, stack_pids
from tests.support.stack import Stack

HOST = "127.0.0.1"
RATIO_TARGET = 2.0
RETRY_AFTER_SECONDS = 1.0
FIRST_503_TARGET_SECONDS = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks.isolation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", action="store_true", help="the real topology too, and the frozen database")
    parser.add_argument("--clients", type=int, default=4, help="key B's closed-loop clients (default: 4)")
    parser.add_argument("--duration", type=float, default=5.0, help="B's measured seconds per case (default: 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="B's unmeasured seconds first (default: 1)")
    parser.add_argument("--streams", type=int, default=300, help="A's open event streams (default: 300)")
    parser.add_argument("--slow-submits", type=int, default=60, help="A's trickling submits (default: 60)")
    parser.add_argument("--idle-connections", type=int, default=200, help="A's idle connections (default: 200)")
    parser.add_argument("--freeze", type=float, default=30.0, help="seconds the database is frozen (default: 30)")
    parser.add_argument("--size", type=int, default=64, help="side of the submitted picture (default: 64)")
    return parser.parse_args(argv)


@dataclass
class Tally:
    """Key A's side of a case: its answers by status, and an event set once `expected` of its
    streams, submits or connections have started."""

    expected: int
    answers: Counter[str] = field(default_factory=Counter)
    started: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.started += 1
        if self.started >= self.expected:
            self.ready.set()


@dataclass(frozen=True)
class Case:
    name: str
    result: LoadResult
    cores: dict[str, float]
    answers: Counter[str]


Pressure = Callable[[Tally], Coroutine[Any, Any, None]]
"""What key A does until it is cancelled, counting into the tally."""


async def hold_streams(port: int, key: str, job_ids: list[str], tally: Tally) -> None:
    """One event stream on each job, read until the server closes it."""

    async def follow(job_id: str) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(
                f"GET /v2/requests/{job_id}/events HTTP/1.1\r\nhost: {HOST}:{port}\r\nx-api-key: {key}\r\n"
                "accept: text/event-stream\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            tally.answers[head.split()[1].decode()] += 1
            tally.start()
            while await reader.read(65536):
                pass
            tally.answers["stream closed by the server"] += 1
        except (OSError, asyncio.IncompleteReadError):
            tally.answers["connection lost"] += 1
            tally.start()
        except asyncio.CancelledError:
            tally.answers["open at the end"] += 1
            raise
        finally:
            writer.close()

    await asyncio.gather(*(follow(job_id) for job_id in job_ids))


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An image server that sends its answer one byte per second."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 67\r\n\r\n" + b"\x89PNG" + bytes(63)
    try:
        await reader.readuntil(b"\r\n\r\n")
        for byte in answer:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)
    except (OSError, asyncio.IncompleteReadError):
        pass
    except asyncio.CancelledError:
        pass  # the case is over; ending here spares asyncio's server a traceback per connection
    finally:
        writer.close()


async def slow_submits(port: int, key: str, body: bytes, clients: int, tally: Tally) -> None:
    """`clients` submits in flight whose image URL trickles; each submits again when answered."""
    server = await asyncio.start_server(trickle, HOST, 0)
    image_port = server.sockets[0].getsockname()[1]
    document = json.loads(body)
    slow = json.dumps({**document, "image": f"http://{HOST}:{image_port}/slow.png"}).encode()

    async def client() -> None:
        connection = Connection(HOST, port, {"x-api-key": key})
        first = True
        try:
            while True:
                if first:
                    tally.start()
                    first = False
                try:
                    status, _ = await connection.request("POST", "/v2/erase", slow)
                except (OSError, asyncio.IncompleteReadError):
                    status = CONNECTION_LOST
                    await connection.close()
                except asyncio.CancelledError:
                    tally.answers["unanswered at the end"] += 1
                    raise
                tally.answers[str(status)] += 1
                await asyncio.sleep(RETRY_AFTER_SECONDS if status in (429, CONNECTION_LOST) else 0.0)
        finally:
            await connection.close()

    async with server:
        await asyncio.gather(*(client() for _ in range(clients)))


async def idle_connections(port: int, count: int, tally: Tally) -> None:
    """`count` connections that send nothing; one the server closes is opened again."""

    async def hold() -> None:
        first = True
        while True:
            reader, writer = await asyncio.open_connection(HOST, port)
            if first:
                tally.start()
                first = False
            try:
                while await reader.read(4096):
                    pass
                tally.answers["closed by the server"] += 1
            except asyncio.CancelledError:
                tally.answers["open at the end"] += 1
                raise
            finally:
                writer.close()

    await asyncio.gather(*(hold() for _ in range(count)))


class Bench:
    """One topology's stack, its two keys, and B's measurements."""

    def __init__(self, args: argparse.Namespace, stack: Stack, key_a: str, roles: dict[str, set[int]]) -> None:
        self.args, self.stack, self.key_a = args, stack, key_a
        self.roles = {**roles, "generator": {os.getpid()}}
        self.body = job_body({}, args.size)

    async def measure(self, name: str, pressure: Pressure | None = None, expected: int = 0) -> Case:
        """B's closed loop, while `pressure` runs (once `expected` of A's things have started)."""
        tally = Tally(expected)
        task = asyncio.create_task(pressure(tally)) if pressure else None
        try:
            if task is not None:
                await self.until_ready(task, tally)
            meter = CpuMeter(self.roles)
            meter.start(time.perf_counter())
            result = await self.submit_as_b(self.args.duration, self.args.warmup)
            cores = meter.stop(time.perf_counter())
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return Case(name, result, cores, tally.answers)

    async def submit_as_b(self, duration: float, warmup: float) -> LoadResult:
        return await run_load(
            HOST,
            self.stack.port,
            lambda i: ("POST", "/v2/erase", self.body),
            concurrency=self.args.clients,
            duration=duration,
            warmup=warmup,
            headers={"x-api-key": self.stack.user_key},
        )

    @staticmethod
    async def until_ready(task: asyncio.Task[None], tally: Tally, timeout: float = 120.0) -> None:
        ready = asyncio.create_task(tally.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task in done:
            task.result()  # raises what stopped key A early
            raise RuntimeError("key A's load ended before it was all started")
        if not done:
            raise TimeoutError(f"key A started {tally.started} of {tally.expected} in {timeout:g} s")
        await asyncio.sleep(1.0)  # the last of A's requests reach the server before B is timed

    async def run_cases(self) -> list[Case]:
        args, port, key = self.args, self.stack.port, self.key_a
        await self.submit_as_b(2.0, 0.0)  # unmeasured: the API's first requests are slow ones
        cases = [await self.measure("quiet")]
        job_ids = await submit_jobs(HOST, port, key, "erase", self.body, total=args.streams)
        cases.append(
            await self.measure(
                f"A holds {args.streams} event streams",
                lambda tally: hold_streams(port, key, job_ids, tally),
                args.streams,
            )
        )
        cases.append(
            await self.measure(
                f"A keeps {args.slow_submits} submits with a 1 byte/s image URL in flight",
                lambda tally: slow_submits(port, key, self.body, args.slow_submits, tally),
                args.slow_submits,
            )
        )
        cases.append(
            await self.measure(
                f"A holds {args.idle_connections} idle connections",
                lambda tally: idle_connections(port, args.idle_connections, tally),
                args.idle_connections,
            )
        )
        cases.append(await self.measure("quiet again"))
        return cases


@dataclass(frozen=True)
class Attempt:
    """One submit: when it was written and answered (perf_counter seconds), and its status."""

    sent: float
    done: float
    status: int


@dataclass(frozen=True)
class Freeze:
    seconds: float
    frozen_at: float
    thawed_at: float
    attempts: list[Attempt]


async def freeze_database(stack: Stack, servers: Servers, body: bytes, clients: int, seconds: float) -> Freeze:
    """Key B's clients submit throughout, each pausing 0.1 s after an answer that is not 2xx; after
    2 s PostgreSQL is stopped for `seconds`, then runs again for 10 s."""
    attempts: list[Attempt] = []
    stop = asyncio.Event()

    async def client() -> None:
        connection = Connection(HOST, stack.port, {"x-api-key": stack.user_key})
        try:
            while not stop.is_set():
                sent = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(connection.request("POST", "/v2/erase", body), 60)
                except TimeoutError:
                    status = TIMED_OUT
                    await connection.close()
                except (OSError, asyncio.IncompleteReadError):
                    status = CONNECTION_LOST
                    await connection.close()
                attempts.append(Attempt(sent, time.perf_counter(), status))
                if not 200 <= status < 300:
                    await asyncio.sleep(0.1)
        finally:
            await connection.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(2.0)
    frozen_at = time.perf_counter()
    with frozen_postgres(servers):
        await asyncio.sleep(seconds)
    thawed_at = time.perf_counter()
    await asyncio.sleep(10.0)
    stop.set()
    await asyncio.gather(*tasks)
    return Freeze(seconds, frozen_at, thawed_at, attempts)


def print_freeze(freeze: Freeze) -> None:
    overlapping = [a for a in freeze.attempts if a.done > freeze.frozen_at and a.sent < freeze.thawed_at]
    first_503 = min((a.done for a in overlapping if a.status == 503), default=None)
    after = [a.done for a in freeze.attempts if a.sent >= freeze.thawed_at and 200 <= a.status < 300]
    took = sorted(a.done - a.sent for a in overlapping)
    print(
        f"## Frozen database (real topology): PostgreSQL stopped (SIGSTOP) for {freeze.seconds:g} s, key B submitting"
    )
    if first_503 is None:
        print(f"- first 503: none came (target <= {FIRST_503_TARGET_SECONDS:g} s): MISSED")
    else:
        since = first_503 - freeze.frozen_at
        verdict = "met" if since <= FIRST_503_TARGET_SECONDS else "MISSED"
        print(f"- first 503: {since:.2f} s after the freeze (target <= {FIRST_503_TARGET_SECONDS:g} s): {verdict}")
    statuses = Counter(a.status for a in overlapping)
    print(
        f"- submits answered during the freeze or in flight at it: {len(overlapping)}, by status "
        + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        + " (0: no answer in 60 s, -1: connection lost)"
    )
    if took:
        within = sum(1 for t in took if t <= FIRST_503_TARGET_SECONDS)
        print(
            f"- how long each took: p50 {percentile(took, 50):.2f} s, p99 {percentile(took, 99):.2f} s, "
            f"max {took[-1]:.2f} s; answered within {FIRST_503_TARGET_SECONDS:g} s: {within} of {len(took)}"
        )
        print("  - how many took: " + ", ".join(f"{span}: {n}" for span, n in spread(took)))
    recovered = f"{min(after) - freeze.thawed_at:.2f} s after SIGCONT" if after else "none within 10 s"
    print(f"- first submit answered 2xx after the thaw: {recovered}")
    print()


def spread(seconds: list[float]) -> list[tuple[str, int]]:
    """How many of `seconds` fall in each span: under 0.1 s, 0.1-1 s, 1-3 s, 3-5 s, 5-10 s, 10 s and more."""
    edges = [0.0, 0.1, 1.0, 3.0, 5.0, 10.0, float("inf")]
    names = ["< 0.1 s", "0.1-1 s", "1-3 s", "3-5 s", "5-10 s", ">= 10 s"]
    return [
        (name, sum(1 for t in seconds if low <= t < high))
        for name, low, high in zip(names, edges[:-1], edges[1:], strict=True)
    ]


def measure_topology(
    args: argparse.Namespace, topology: str, servers: Servers | None
) -> tuple[list[list[object]], Freeze | None]:
    extra = {"INPAINT_ALLOW_LOOPBACK_URLS": "true", "INPAINT_MAX_EVENT_STREAMS_PER_KEY": str(args.streams)}
    with (
        tempfile.TemporaryDirectory(prefix=f"iq-isolation-{topology}-") as tmp,
        running_stack(topology, Path(tmp), servers, worker=False, extra_env=extra) as stack,
    ):
        roles = {**(servers.pids if servers and topology == "real" else {}), **stack_pids(stack)}
        bench = Bench(args, stack, create_key(stack, "key-a"), roles)
        cases = asyncio.run(bench.run_cases())
        freeze = None
        if topology == "real" and servers is not None:
            freeze = asyncio.run(freeze_database(stack, servers, bench.body, args.clients, args.freeze))
    quiet = percentile(cases[0].result.latencies, 99)
    rows: list[list[object]] = []
    for case in cases:
        p50, p99 = p50_p99_ms(case.result.latencies)
        ratio = percentile(case.result.latencies, 99) / quiet
        judged = "" if case.name.startswith("quiet") else (" met" if ratio <= RATIO_TARGET else " MISSED")
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(case.answers.items())) or "-"
        rows.append(
            [topology, case.name, f"{case.result.rate:.0f}", len(case.result.latencies), p50, p99]
            + [f"{ratio:.2f}{judged}", format_failures(case.result.statuses), answers, format_cores(case.cores)]
        )
    return rows, freeze


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_header("Isolation between keys", "benchmarks.isolation", argv)
    print(
        f"key B: {args.clients} closed-loop clients of POST /v2/erase ({args.size}x{args.size} picture), "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured per case; no inference worker (jobs stay QUEUED)"
    )
    print(f"INPAINT_MAX_EVENT_STREAMS_PER_KEY={args.streams}; every other limit is the product's default\n")
    topologies = ["embedded", "real"] if args.real else ["embedded"]
    rows: list[list[object]] = []
    freezes: list[Freeze] = []
    with running_servers(args.real) as servers:
        for topology in topologies:
            measured, freeze = measure_topology(args, topology, servers)
            rows += measured
            freezes += [freeze] if freeze else []
    headers = ["topology", "case", "B req/s", "B n", "B p50 ms", "B p99 ms", f"B p99 / quiet (<= {RATIO_TARGET:g})"]
    headers += ["B failed", "key A's answers", "cores used"]
    print_table(headers, rows)
    print(
        "B p99 / quiet: against the first quiet case of the same topology; 'quiet again' shows the drift.\n"
        "key A's answers: HTTP status of each answer (a stream's status is its first line), then\n"
        "what was still open or unanswered when B's measurement ended, and connections the server\n"
        "closed. cores used: as in api_throughput.\n"
    )
    for freeze in freezes:
        print_freeze(freeze)


if __name__ == "__main__":
    # A SIGTERM unwinds like Ctrl-C, so that a frozen PostgreSQL is always continued and every server stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
