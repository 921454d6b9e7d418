"""A lean HTTP/1.1 load generator: asyncio streams, keep-alive; closed loop and open loop.

`run_load` is a closed loop: each client sends its next request when its last one
is answered, so it measures throughput (and, at high concurrency, queueing).
`run_open_loop` starts requests on a fixed schedule whatever the answers do, and
times each from its scheduled start, so a slow answer is not hidden by the client
waiting for it (no coordinated omission): it measures latency at a given rate.

It is written on bare sockets rather than httpx so that the client spends as
little of the machine's CPU as it can: on a 2-core machine the load generator and
the server share the cores, and a heavy client would make every server look slow.
Responses are read by Content-Length (or chunked); bodies are kept only when asked.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

Request = tuple[str, str, bytes]
"""(method, path, body); the body is JSON or empty."""


class Connection:
    """One keep-alive connection to host:port. Not shared between tasks."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read its whole response: (status code, body)."""
        reader, writer = await self._connect()
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n{self.extra}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        head_block = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, _, header_block = head_block.partition("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in header_block.split("\r\n") if line)
        }
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = await _read_chunked(reader)
        else:
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return int(status_line.split()[1]), data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return b"".join(parts)
        parts.append(chunk[:-2])


TIMED_OUT = 0
"""The status recorded for a request that got no answer within the client's timeout."""
CONNECTION_LOST = -1
"""The status recorded for a request whose connection closed before the whole answer came."""


@dataclass
class LoadResult:
    """What one load phase measured. Latencies and the rate: responses inside the measurement window.

    `statuses` counts every response of the phase, warm-up and late ones too;
    `overrun` is how long the phase ran past its window waiting for the last answers
    (about one latency when all is well; much more when requests were stuck).
    """

    window: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)
    overrun: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.window

    @property
    def errors(self) -> int:
        """Responses that were not 2xx, and requests that timed out."""
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)


async def run_load(
    host: str,
    port: int,
    next_request: Callable[[int], Request],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    headers: dict[str, str] | None = None,
    keep_bodies: bool = False,
    timeout: float = 60.0,
) -> LoadResult:
    """`concurrency` closed-loop clients for warmup + duration seconds; only the last `duration` counts.

    `next_request(i)` gives the i-th request (i counts over all clients). Latency is
    from writing the request to reading the last byte of the response; the rate and
    the latencies count the responses that arrived inside the window. A request
    unanswered after `timeout` seconds counts as TIMED_OUT and its connection is dropped.
    """
    loop_started = time.perf_counter()
    measure_from, measure_to = loop_started + warmup, loop_started + warmup + duration
    result = LoadResult(window=duration)
    counter = iter(range(10**12))

    async def client() -> None:
        connection = Connection(host, port, headers)
        try:
            while (sent := time.perf_counter()) < measure_to:
                method, path, body = next_request(next(counter))
                try:
                    status, data = await asyncio.wait_for(connection.request(method, path, body), timeout)
                except TimeoutError:
                    status, data = TIMED_OUT, b""
                    await connection.close()
                done = time.perf_counter()
                result.statuses[status] += 1
                if measure_from <= done <= measure_to and status != TIMED_OUT:
                    result.latencies.append(done - sent)
                    if keep_bodies and 200 <= status < 300:
                        result.bodies.append(data)
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.overrun = time.perf_counter() - measure_to
    return result


@dataclass
class OpenLoopResult:
    """What an open-loop phase measured: `latencies` from each request's scheduled start to its last
    byte (answered requests only); `lags` from its scheduled start to the moment it was written (the
    generator's own delay: a request more than a few ms late means the machine could not keep the schedule)."""

    rate: float
    scheduled: int
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    connections: int = 0

    @property
    def errors(self) -> int:
        """Answers that were not 2xx, requests that timed out and connections lost."""
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    def over(self, seconds: float) -> int:
        return sum(1 for latency in self.latencies if latency > seconds)

    def late(self, seconds: float) -> int:
        return sum(1 for lag in self.lags if lag > seconds)


class ConnectionPool:
    """Idle keep-alive connections, the most recently used first; a new one when none is idle.

    Connections idle longer than `max_idle` are closed rather than reused, so that the
    server's keep-alive timeout never closes one under a request."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None, max_idle: float) -> None:
        self.host, self.port, self.headers, self.max_idle = host, port, headers, max_idle
        self.idle: list[tuple[Connection, float]] = []
        self.opened = 0

    async def take(self) -> Connection:
        now = time.perf_counter()
        while self.idle and now - self.idle[0][1] > self.max_idle:
            await self.idle.pop(0)[0].close()
        if self.idle:
            return self.idle.pop()[0]
        self.opened += 1
        return Connection(self.host, self.port, self.headers)

    def put_back(self, connection: Connection) -> None:
        if connection.writer is not None:
            self.idle.append((connection, time.perf_counter()))

    async def close(self) -> None:
        for connection, _ in self.idle:
            await connection.close()
        self.idle.clear()


async def run_open_loop(
    host: str,
    port: int,
    next_request: Callable[[int], Request],
    *,
    rate: float,
    duration: float,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    max_idle: float = 1.0,
) -> OpenLoopResult:
    """Start request i at start + i / rate for `duration` seconds, each on a connection of its own
    at that moment (a pooled idle one, or a new one), however many are still unanswered; then wait
    for the last answers. Latency runs from the scheduled start, so the generator's lag counts too."""
    result = OpenLoopResult(rate=rate, scheduled=int(rate * duration))
    pool = ConnectionPool(host, port, headers, max_idle)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        connection = await pool.take()
        method, path, body = next_request(i)
        result.lags.append(time.perf_counter() - scheduled)
        try:
            status, _ = await asyncio.wait_for(connection.request(method, path, body), timeout)
        except TimeoutError:
            status = TIMED_OUT
        except (OSError, asyncio.IncompleteReadError):
            status = CONNECTION_LOST
        done = time.perf_counter()
        result.statuses[status] += 1
        if status in (TIMED_OUT, CONNECTION_LOST):
            await connection.close()
        else:
            result.latencies.append(done - scheduled)
            pool.put_back(connection)

    start = time.perf_counter() + 0.05
    try:
        for i in range(result.scheduled):
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            task = asyncio.create_task(one(i, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    finally:
        result.connections = pool.opened
        await pool.close()
    return result
