"""Driving whole jobs through the service as a client would: submit, poll the status, note the times.

Clock convention: every time here is wall-clock seconds since the epoch
(`time.time()`), and the service's timestamps (created_at, finished_at, from
`datetime.now(UTC)` in its processes) are on the same machine's clock, so they
can be subtracted from the client's. started_at is created_at + metrics.queue_time.

The poller is a considerate client: it polls a job every `fast` seconds while the
job is PROCESSING or next in line (queue_position 0), and every `slow` seconds
while other jobs are ahead of it, so that eight jobs in flight do not become
eight tight polling loops on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from benchmarks.loadgen import Connection

TERMINAL = ("COMPLETED", "FAILED")


@dataclass(frozen=True)
class JobTiming:
    """One job's clock readings. Client: sent, accepted, seen. Service: created, started, finished."""

    job_id: str
    status: str
    sent: float
    accepted: float
    seen: float
    created: float
    started: float
    finished: float
    inference: float
    polls: int

    @property
    def wall(self) -> float:
        """Submit sent until a poll answered COMPLETED."""
        return self.seen - self.sent

    @property
    def overhead(self) -> float:
        """The orchestration overhead of issue 7: wall time minus the worker's inference time."""
        return self.wall - self.inference

    @property
    def queued(self) -> float:
        """Row committed until a worker claimed it: publish, broker delivery, claim."""
        return self.started - self.created

    @property
    def worker_other(self) -> float:
        """Claimed until COMPLETED written, less inference: inputs, pipeline lookup, PNG encode, upload."""
        return self.finished - self.started - self.inference

    @property
    def visible(self) -> float:
        """finished_at until a poll saw COMPLETED: the commit, the poll interval, the status route."""
        return self.seen - self.finished

    @property
    def gap_upper(self) -> float:
        """Upper bound of inference end → COMPLETED seen (inference began at or after started_at)."""
        return self.seen - (self.started + self.inference)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def timing_from(
    job_id: str, body: dict[str, Any], *, sent: float, accepted: float, seen: float, polls: int
) -> JobTiming:
    metrics = body.get("metrics") or {}
    created = _epoch(body["created_at"])
    return JobTiming(
        job_id=job_id,
        status=body["status"],
        sent=sent,
        accepted=accepted,
        seen=seen,
        created=created,
        started=created + float(metrics.get("queue_time") or 0.0),
        finished=_epoch(body["finished_at"]),
        inference=float(metrics.get("inference_time") or 0.0),
        polls=polls,
    )


async def run_one(connection: Connection, model: str, body: bytes, *, fast: float, slow: float) -> JobTiming:
    """Submit one job and poll it to the end."""
    sent = time.time()
    code, data = await connection.request("POST", f"/v2/{model}", body)
    accepted = time.time()
    if code != 200:
        raise RuntimeError(f"submit answered {code}: {data[:500]!r}")
    job_id = json.loads(data)["request_id"]
    delay, polls = fast, 0
    while True:
        await asyncio.sleep(delay)
        _code, data = await connection.request("GET", f"/v2/requests/{job_id}/status")
        polls += 1
        status = json.loads(data)
        if status.get("status") in TERMINAL:
            return timing_from(job_id, status, sent=sent, accepted=accepted, seen=time.time(), polls=polls)
        near = status.get("status") == "PROCESSING" or status.get("queue_position") == 0
        delay = fast if near else slow


async def drive_jobs(
    host: str, port: int, key: str, model: str, body: bytes, *, total: int, inflight: int, fast: float, slow: float
) -> list[JobTiming]:
    """`total` jobs, `inflight` at a time (each client submits its next job when its last one ends)."""
    remaining = iter(range(total))
    timings: list[JobTiming] = []

    async def client() -> None:
        connection = Connection(host, port, {"x-api-key": key})
        try:
            for _ in remaining:
                timings.append(await run_one(connection, model, body, fast=fast, slow=slow))
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(inflight)))
    failed = [t for t in timings if t.status != "COMPLETED"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {total} jobs did not complete, e.g. {failed[0].job_id}")
    return timings


async def submit_jobs(
    host: str, port: int, key: str, model: str, body: bytes, *, total: int, inflight: int = 4
) -> list[str]:
    """`total` jobs submitted and left alone, `inflight` at a time; their ids."""
    ids: list[str] = []
    remaining = iter(range(total))

    async def client() -> None:
        connection = Connection(host, port, {"x-api-key": key})
        try:
            for _ in remaining:
                code, data = await connection.request("POST", f"/v2/{model}", body)
                if code != 200:
                    raise RuntimeError(f"submit answered {code}: {data[:500]!r}")
                ids.append(json.loads(data)["request_id"])
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(inflight)))
    return ids


def job_body(model_params: dict[str, Any], size: int) -> bytes:
    """A JSON submit body: the test suite's picture and mask at size x size, plus `model_params`."""
    from tests.support.images import job_body as test_body

    return json.dumps(test_body((size, size), **model_params)).encode()


def steady_cycles(timings: list[JobTiming]) -> list[float]:
    """Worker time per job beyond inference, for jobs that were waiting when the one before them finished.

    With a backlog, consecutive completions are one worker cycle apart:
    finished[k] - finished[k-1] - inference[k] is everything the worker did for job k
    besides inference (broker delivery, claim, inputs, upload, status writes).
    """
    ordered = sorted(timings, key=lambda t: t.finished)
    return [
        cur.finished - prev.finished - cur.inference
        for prev, cur in zip(ordered, ordered[1:], strict=False)
        if cur.created < prev.finished
    ]
