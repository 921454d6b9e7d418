"""The asynchronous client: the surface of Client, with async methods (httpx.AsyncClient).

async with AsyncClient() as client:
    job = await client.submit("erase", prompt="-", image="photo.png", mask="mask.png")
    async for event in job.events():
        print(event.event, event.data.get("progress"))
    await job.download("out/")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

import httpx

from inpaint_client._http import (
    DEFAULT_TIMEOUT,
    TERMINAL,
    SyncResult,
    api_error,
    auth_headers,
    check_batch,
    expect_json,
    listing_query,
    read_result,
    read_status,
    read_sync_answer,
    resolve_api_key,
    resolve_base_url,
    submit_headers,
)
from inpaint_client._sse import Event, EventDecoder, EventFollower
from inpaint_client.errors import APIError, EventStreamLost, InferenceTimeout
from inpaint_client.handles import BatchInfo, JobInfo
from inpaint_client.models import BatchItem, InpaintParams, prepare_body
from inpaint_client.outputs import pending_outputs, save_output

ProgressCallback = Callable[[dict[str, Any]], Any]
"""Called with every status seen; may be a plain function or a coroutine function."""


async def call_back(on_progress: ProgressCallback | None, body: dict[str, Any]) -> None:
    if on_progress is not None and asyncio.iscoroutine(outcome := on_progress(body)):
        await outcome


class AsyncClient:
    """Inpaint Queue over HTTP, async. Arguments as Client's."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._headers = auth_headers(resolve_api_key(api_key))
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self._http.request(method, path, headers={**self._headers, **(headers or {})}, **kwargs)

    async def submit(
        self, model: str, *, idempotency_key: str | None = None, **params: Unpack[InpaintParams]
    ) -> AsyncJob:
        answer = expect_json(
            await self._request(
                "POST", f"/v2/{model}", json=prepare_body(dict(params)), headers=submit_headers(idempotency_key)
            )
        )
        return AsyncJob(client=self, **JobInfo.fields_of(answer))

    submit_async = submit

    async def run(
        self,
        model: str,
        *,
        timeout: float = 600.0,
        interval: float = 1.0,
        stream: bool = False,
        on_progress: ProgressCallback | None = None,
        idempotency_key: str | None = None,
        **params: Unpack[InpaintParams],
    ) -> dict[str, Any]:
        job = await self.submit(model, idempotency_key=idempotency_key, **params)
        return await job.wait(timeout=timeout, interval=interval, stream=stream, on_progress=on_progress)

    async def run_sync(
        self, model: str, *, idempotency_key: str | None = None, **params: Unpack[InpaintParams]
    ) -> SyncResult:
        response = await self._request(
            "POST",
            f"/v1/{model}",
            json=prepare_body(dict(params)),
            headers=submit_headers(idempotency_key),
            timeout=httpx.Timeout(DEFAULT_TIMEOUT, read=None),
        )
        return read_sync_answer(response)

    def job(self, request_id: str) -> AsyncJob:
        return AsyncJob(client=self, request_id=request_id)

    async def status(self, request_id: str) -> dict[str, Any]:
        return read_status(await self._request("GET", f"/v2/requests/{request_id}/status"))

    async def result(self, request_id: str, *, base64: bool | None = None) -> dict[str, Any]:
        query = {} if base64 is None else {"base64": "true" if base64 else "false"}
        return read_result(await self._request("GET", f"/v2/requests/{request_id}", params=query), request_id)

    async def cancel(self, request_id: str) -> dict[str, Any]:
        return dict(expect_json(await self._request("POST", f"/v2/requests/{request_id}/cancel")))

    async def wait(
        self,
        request_id: str,
        *,
        timeout: float = 600.0,
        interval: float = 1.0,
        stream: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """As Client.wait: the result body, or InferenceFailed / InferenceTimeout."""
        deadline = time.monotonic() + timeout
        if not (stream and await self._follow(request_id, deadline, timeout, on_progress)):
            await self._poll(request_id, deadline, timeout, interval, on_progress)
        return await self.result(request_id)

    async def _poll(
        self, request_id: str, deadline: float, timeout: float, interval: float, on_progress: ProgressCallback | None
    ) -> None:
        while True:
            body = await self.status(request_id)
            await call_back(on_progress, body)
            if body["status"] in TERMINAL:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InferenceTimeout(request_id, timeout, body["status"])
            await asyncio.sleep(min(interval, remaining))

    async def _follow(
        self, request_id: str, deadline: float, timeout: float, on_progress: ProgressCallback | None
    ) -> bool:
        follower = EventFollower(request_id, last_event_id=None, timeout=timeout, max_retries=3, deadline=deadline)
        try:
            async with aclosing(self._follow_events(follower)) as events:
                async for event in events:
                    await call_back(on_progress, event.data)
                    if event.terminal:
                        return True
        except (APIError, EventStreamLost):
            return False
        return False

    def events(
        self, request_id: str, *, last_event_id: str | None = None, timeout: float | None = None, max_retries: int = 5
    ) -> AsyncIterator[Event]:
        """As Client.events, as an async iterator."""
        follower = EventFollower(request_id, last_event_id=last_event_id, timeout=timeout, max_retries=max_retries)
        return self._follow_events(follower)

    async def _follow_events(self, follower: EventFollower) -> AsyncIterator[Event]:
        while True:
            cause = None
            try:
                async with self._http.stream(
                    "GET",
                    follower.path,
                    headers={**self._headers, **follower.headers()},
                    timeout=follower.read_timeout(),
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise api_error(response)
                    decoder = EventDecoder()
                    async for line in response.aiter_lines():
                        follower.check_deadline()
                        if (event := follower.accept(decoder.feed(line))) is not None:
                            yield event
                            if event.terminal:
                                return
            except httpx.TransportError as exc:
                cause = exc
            await asyncio.sleep(follower.dropped(cause))

    async def download(self, result: dict[str, Any], directory: str | Path, *, stem: str | None = None) -> list[Path]:
        paths = []
        for index, item in enumerate(pending_outputs(result)):
            if not isinstance(item, bytes):
                response = await self._http.get(item)  # no key sent with a signed link
                if response.status_code != 200:
                    raise api_error(response)
                item = response.content
            paths.append(save_output(directory, stem or str(result["request_id"]), index, item))
        return paths

    async def submit_batch(
        self, items: list[BatchItem], *, model: str | None = None, idempotency_key: str | None = None
    ) -> AsyncBatch:
        check_batch(list(items))
        bodies = [prepare_body({"model": model, **item}) for item in items]
        answer = expect_json(
            await self._request("POST", "/v2/batch", json={"requests": bodies}, headers=submit_headers(idempotency_key))
        )
        return AsyncBatch(client=self, **BatchInfo.fields_of(answer))

    async def batch_status(self, batch_id: str) -> dict[str, Any]:
        return dict(expect_json(await self._request("GET", f"/v2/batch/{batch_id}")))

    async def list_requests(self, *, status: str | None = None, page_size: int = 50) -> AsyncIterator[dict[str, Any]]:
        """Your jobs, newest first, every page (an async iterator)."""
        cursor = None
        while True:
            query = listing_query(status, page_size, cursor)
            page = expect_json(await self._request("GET", "/v2/requests", params=query))
            for item in page["requests"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def models(self) -> list[dict[str, Any]]:
        return list(expect_json(await self._request("GET", "/v2/models"))["models"])

    async def schedulers(self) -> list[dict[str, Any]]:
        return list(expect_json(await self._request("GET", "/v2/schedulers"))["schedulers"])


@dataclass
class AsyncJob(JobInfo):
    client: AsyncClient = field(repr=False, kw_only=True)

    async def status(self) -> dict[str, Any]:
        return await self.client.status(self.request_id)

    async def result(self, *, base64: bool | None = None) -> dict[str, Any]:
        return await self.client.result(self.request_id, base64=base64)

    async def wait(
        self,
        timeout: float = 600.0,
        interval: float = 1.0,
        stream: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        return await self.client.wait(
            self.request_id, timeout=timeout, interval=interval, stream=stream, on_progress=on_progress
        )

    async def cancel(self) -> dict[str, Any]:
        return await self.client.cancel(self.request_id)

    def events(self, *, last_event_id: str | None = None, timeout: float | None = None) -> AsyncIterator[Event]:
        return self.client.events(self.request_id, last_event_id=last_event_id, timeout=timeout)

    async def download(
        self, directory: str | Path, *, stem: str | None = None, result: dict[str, Any] | None = None
    ) -> list[Path]:
        return await self.client.download(result or await self.result(), directory, stem=stem)


@dataclass
class AsyncBatch(BatchInfo):
    client: AsyncClient = field(repr=False, kw_only=True)

    @property
    def jobs(self) -> list[AsyncJob | None]:
        return [
            AsyncJob(client=self.client, **JobInfo.fields_of(item)) if item.get("request_id") else None
            for item in self.items
        ]

    async def status(self) -> dict[str, Any]:
        return await self.client.batch_status(self.batch_id)

    async def wait(
        self, timeout: float = 600.0, interval: float = 1.0, on_progress: ProgressCallback | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            summary = await self.status()
            await call_back(on_progress, summary)
            if summary["done"]:
                return summary
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InferenceTimeout(self.batch_id, timeout)
            await asyncio.sleep(min(interval, remaining))
