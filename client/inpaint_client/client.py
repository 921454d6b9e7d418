"""The synchronous client. AsyncClient (aio.py) has the same surface with async methods.

with Client() as client:                      # INPAINT_API_URL, INPAINT_API_KEY
    result = client.run("erase", prompt="-", image="photo.png", mask="mask.png")
    job = client.submit("sd1.5-inpainting", prompt="a red apple", image=..., mask=...)
    result = job.wait(timeout=600, stream=True, on_progress=print)
    job.download("out/")
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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
from inpaint_client.handles import Batch, Job, ProgressCallback
from inpaint_client.models import BatchItem, InpaintParams, prepare_body
from inpaint_client.outputs import pending_outputs, save_output


class Client:
    """Inpaint Queue over HTTP. `base_url`/`api_key` default to INPAINT_API_URL and INPAINT_API_KEY
    (or SEGMIND_API_KEY); `timeout` is per HTTP request, not per job."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._headers = auth_headers(resolve_api_key(api_key))
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return self._http.request(method, path, headers={**self._headers, **(headers or {})}, **kwargs)

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, model: str, *, idempotency_key: str | None = None, **params: Unpack[InpaintParams]) -> Job:
        """Queue a job; answers at once. With `idempotency_key`, resubmitting the same body returns
        the same job (and a different body with the same key is an APIError 409)."""
        answer = expect_json(
            self._request(
                "POST", f"/v2/{model}", json=prepare_body(dict(params)), headers=submit_headers(idempotency_key)
            )
        )
        return Job.from_answer(self, answer)

    submit_async = submit
    """The Segmind SDK's name for submit."""

    def run(
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
        """Submit and wait: the result body (`status`, `output`, `metrics`, `seed`, ...)."""
        job = self.submit(model, idempotency_key=idempotency_key, **params)
        return job.wait(timeout=timeout, interval=interval, stream=stream, on_progress=on_progress)

    def run_sync(
        self, model: str, *, idempotency_key: str | None = None, **params: Unpack[InpaintParams]
    ) -> SyncResult:
        """POST /v1/{model}: the server waits (INPAINT_SYNC_WAIT_SECONDS) and answers the first image.
        Not done in time raises InferenceTimeout; the job goes on: `client.job(e.request_id).wait()`."""
        body = prepare_body(dict(params))
        response = self._request(
            "POST",
            f"/v1/{model}",
            json=body,
            headers=submit_headers(idempotency_key),
            timeout=httpx.Timeout(DEFAULT_TIMEOUT, read=None),
        )
        return read_sync_answer(response)

    def job(self, request_id: str) -> Job:
        """A handle on an existing job (e.g. after InferenceTimeout)."""
        return Job(client=self, request_id=request_id)

    def status(self, request_id: str) -> dict[str, Any]:
        """The status body; FAILED is returned too (with `error` and `error_code`)."""
        return read_status(self._request("GET", f"/v2/requests/{request_id}/status"))

    def result(self, request_id: str, *, base64: bool | None = None) -> dict[str, Any]:
        """The result body; a job not done yet gives its status body. FAILED raises InferenceFailed."""
        query = {} if base64 is None else {"base64": "true" if base64 else "false"}
        return read_result(self._request("GET", f"/v2/requests/{request_id}", params=query), request_id)

    def cancel(self, request_id: str) -> dict[str, Any]:
        """`{"cancelled": bool, "outcome": "cancelled" | "already_completed" | "already_failed", "status"}`."""
        return dict(expect_json(self._request("POST", f"/v2/requests/{request_id}/cancel")))

    def wait(
        self,
        request_id: str,
        *,
        timeout: float = 600.0,
        interval: float = 1.0,
        stream: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Block until the job ends: the result body, or InferenceFailed / InferenceTimeout.

        Polls the status every `interval` seconds (as Segmind's SDK does), or with `stream=True`
        follows the event stream, falling back to polling if the stream cannot be used."""
        deadline = time.monotonic() + timeout
        if not (stream and self._follow(request_id, deadline, timeout, on_progress)):
            self._poll(request_id, deadline, timeout, interval, on_progress)
        return self.result(request_id)

    def _poll(
        self, request_id: str, deadline: float, timeout: float, interval: float, on_progress: ProgressCallback | None
    ) -> None:
        while True:
            body = self.status(request_id)
            if on_progress:
                on_progress(body)
            if body["status"] in TERMINAL:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InferenceTimeout(request_id, timeout, body["status"])
            time.sleep(min(interval, remaining))

    def _follow(self, request_id: str, deadline: float, timeout: float, on_progress: ProgressCallback | None) -> bool:
        """Follow the events to a terminal one: True; False if the stream is unusable here."""
        follower = EventFollower(request_id, last_event_id=None, timeout=timeout, max_retries=3, deadline=deadline)
        try:
            for event in self._follow_events(follower):
                if on_progress:
                    on_progress(event.data)
                if event.terminal:
                    return True
        except (APIError, EventStreamLost):
            return False
        return False

    def events(
        self, request_id: str, *, last_event_id: str | None = None, timeout: float | None = None, max_retries: int = 5
    ) -> Iterator[Event]:
        """The job's server-sent events up to the terminal one (`completed` or `failed`).

        A dropped connection is resumed with Last-Event-ID, so no event is repeated or lost;
        after `max_retries` failed reconnections in a row, EventStreamLost. With `timeout`,
        InferenceTimeout once that many seconds have passed."""
        follower = EventFollower(request_id, last_event_id=last_event_id, timeout=timeout, max_retries=max_retries)
        return self._follow_events(follower)

    def _follow_events(self, follower: EventFollower) -> Iterator[Event]:
        while True:
            cause = None
            try:
                with self._http.stream(
                    "GET",
                    follower.path,
                    headers={**self._headers, **follower.headers()},
                    timeout=follower.read_timeout(),
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        raise api_error(response)
                    decoder = EventDecoder()
                    for line in response.iter_lines():
                        follower.check_deadline()
                        if (event := follower.accept(decoder.feed(line))) is not None:
                            yield event
                            if event.terminal:
                                return
            except httpx.TransportError as exc:
                cause = exc
            time.sleep(follower.dropped(cause))

    def download(self, result: dict[str, Any], directory: str | Path, *, stem: str | None = None) -> list[Path]:
        """Save a COMPLETED result's images (URLs fetched, base64 decoded); the paths written."""
        paths = []
        for index, item in enumerate(pending_outputs(result)):
            data = item if isinstance(item, bytes) else self._fetch_output(item)
            paths.append(save_output(directory, stem or str(result["request_id"]), index, data))
        return paths

    def _fetch_output(self, url: str) -> bytes:
        response = self._http.get(url)  # signed links need no key: it is not sent to another host
        if response.status_code != 200:
            raise api_error(response)
        return response.content

    # -- batches -------------------------------------------------------------------------------
    def submit_batch(
        self, items: list[BatchItem], *, model: str | None = None, idempotency_key: str | None = None
    ) -> Batch:
        """POST /v2/batch: 1-100 job bodies, each with `model` (or the `model` given here).
        Each item is accepted or rejected on its own: see Batch.items and Batch.jobs."""
        check_batch(list(items))
        bodies = [prepare_body({"model": model, **item}) for item in items]
        answer = expect_json(
            self._request("POST", "/v2/batch", json={"requests": bodies}, headers=submit_headers(idempotency_key))
        )
        return Batch.from_answer(self, answer)

    def batch_status(self, batch_id: str) -> dict[str, Any]:
        """Counts by state (`REJECTED` for refused items), each item's state, and `done`."""
        return dict(expect_json(self._request("GET", f"/v2/batch/{batch_id}")))

    # -- catalogue and listing -----------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        return list(expect_json(self._request("GET", "/v2/models"))["models"])

    def schedulers(self) -> list[dict[str, Any]]:
        return list(expect_json(self._request("GET", "/v2/schedulers"))["schedulers"])

    def list_requests(self, *, status: str | None = None, page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Your jobs, newest first, every page."""
        cursor = None
        while True:
            query = listing_query(status, page_size, cursor)
            page = expect_json(self._request("GET", "/v2/requests", params=query))
            yield from page["requests"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
