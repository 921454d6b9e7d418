"""A lean HTTP/1.1 load generator: asyncio streams, keep-alive, one connection per concurrent client.

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
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return b"".join(parts)
        parts.append(chunk[:-2])


TIMED_OUT = 0
"""The status recorded for a request that got no answer within the client's timeout."""


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
