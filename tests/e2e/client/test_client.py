"""The Python SDK (client/inpaint_client) against live stacks: real API, real workers.

What needs no server (encode_image, configuration from the environment) is tests/client/test_sdk.py."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import httpx
import numpy as np
import pytest
from inpaint_client import APIError, Client, InferenceFailed, InferenceTimeout

from tests.conftest import TINY_SLUG
from tests.support.images import box_mask, decode, png_bytes, scene
from tests.support.stack import Stack, _keys_of

PROMPT = "a red apple"


def client_for(stack: Stack, key: str | None = None) -> Client:
    return Client(stack.base_url, key or stack.user_key)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(decode(path.read_bytes()).convert("RGB"))


def assert_kept_pixels(out: np.ndarray, size: tuple[int, int] = (64, 64)) -> None:
    original, hole = np.asarray(scene(size)), np.asarray(box_mask(size)) > 127
    assert out.shape == original.shape
    assert np.array_equal(out[~hole], original[~hole]), "unmasked pixels differ from the input"


# -- run / submit / wait / download -------------------------------------------------------------


def test_run_returns_the_result_and_download_saves_its_pixels(stack: Stack, tmp_path: Path) -> None:
    """PIL image and raw bytes as inputs; output URLs (local links or presigned S3) fetched and saved."""
    with client_for(stack) as client:
        result = client.run(
            TINY_SLUG,
            interval=0.1,
            prompt=PROMPT,
            image=scene(),
            mask=png_bytes(box_mask()),
            seed=1234,
            samples=2,
            num_inference_steps=3,
        )
        assert result["status"] == "COMPLETED" and result["seeds"] == [1234, 1235]
        assert result["metrics"]["inference_time"] > 0
        paths = client.download(result, tmp_path)
    assert [p.name for p in paths] == [f"{result['request_id']}-0.png", f"{result['request_id']}-1.png"]
    first, second = (pixels(p) for p in paths)
    for out in (first, second):
        assert_kept_pixels(out)
    hole = np.asarray(box_mask()) > 127
    assert not np.array_equal(first[hole], np.asarray(scene())[hole]), "the masked area was not repainted"
    assert not np.array_equal(first, second)


def test_submit_files_and_base64_output(embedded: Stack, tmp_path: Path) -> None:
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    image.write_bytes(png_bytes(scene()))
    mask.write_bytes(png_bytes(box_mask()))
    with client_for(embedded) as client:
        job = client.submit("erase", prompt=PROMPT, image=str(image), mask=mask, base64=True)
        assert job.request_id and job.status_url.endswith(f"/v2/requests/{job.request_id}/status")
        result = job.wait(interval=0.1)
        assert result["output_format"] == "base64" and job.status()["status"] == "COMPLETED"
        inline = job.download(tmp_path / "inline", result=result)
        linked = job.download(tmp_path / "linked", result=job.result(base64=False), stem="linked")
    assert linked[0].name == "linked-0.png"
    assert inline[0].read_bytes() == linked[0].read_bytes()
    assert_kept_pixels(pixels(inline[0]))


def test_refusals_are_api_errors(embedded: Stack) -> None:
    with Client(embedded.base_url, "iq_not_a_key") as client, pytest.raises(APIError) as denied:
        client.submit("erase", prompt=PROMPT, image=scene(), mask=box_mask())
    assert denied.value.status_code == 401
    with client_for(embedded) as client:
        with pytest.raises(APIError) as invalid:
            client.submit("erase", prompt=PROMPT, image=scene(), mask=box_mask(), samples=9)
        assert invalid.value.status_code == 400 and invalid.value.errors[0]["field"] == "samples"
        with pytest.raises(APIError) as unknown:
            client.job("no-such-request").status()
        assert unknown.value.status_code == 404


# -- failure, timeout, cancel -------------------------------------------------------------------


def test_failed_job_raises_inference_failed(embedded: Stack, tmp_path: Path) -> None:
    embedded.register_missing_model("sdk-missing", tmp_path)
    with client_for(embedded) as client:
        with pytest.raises(InferenceFailed) as failed:
            client.run("sdk-missing", interval=0.1, prompt=PROMPT, image=scene(), mask=box_mask())
        error = failed.value
        assert error.request_id and error.error_code == "model_unavailable" and "sdk-missing" in error.detail
        job = client.job(error.request_id)
        assert job.status()["status"] == "FAILED", "status answers FAILED (HTTP 422) without raising"
        with pytest.raises(InferenceFailed):
            job.result()
        with pytest.raises(InferenceFailed):
            job.wait(stream=True)


def test_timeout_raises_inference_timeout_and_the_job_is_collected_later(embedded: Stack) -> None:
    with embedded.worker_stopped():
        with client_for(embedded) as client:
            job = client.submit("erase", prompt=PROMPT, image=scene(), mask=box_mask())
            with pytest.raises(InferenceTimeout) as polled:
                job.wait(timeout=0.5, interval=0.1)
            assert polled.value.request_id == job.request_id and polled.value.status == "QUEUED"
            with pytest.raises(InferenceTimeout) as streamed:
                job.wait(timeout=0.5, stream=True)
            assert streamed.value.request_id == job.request_id
            with pytest.raises(InferenceTimeout) as synchronous:  # POST /v1 answers 504 after its wait
                client.run_sync("erase", prompt=PROMPT, image=scene(), mask=box_mask())
            late = synchronous.value.request_id
    with client_for(embedded) as client:
        for request_id in (job.request_id, late):
            assert client.job(request_id).wait(interval=0.2)["status"] == "COMPLETED"


def test_cancel_ends_the_job_failed(embedded: Stack) -> None:
    with client_for(embedded) as client:
        job = client.submit(TINY_SLUG, prompt=PROMPT, image=scene(), mask=box_mask(), num_inference_steps=50)
        answer = job.cancel()
        assert answer["cancelled"] is True and answer["status"] == "FAILED"
        with pytest.raises(InferenceFailed) as failed:
            job.wait(interval=0.1)
        assert failed.value.error_code == "cancelled"
        assert job.cancel() == {
            "request_id": job.request_id,
            "cancelled": False,
            "outcome": "already_failed",
            "status": "FAILED",
        }


# -- server-sent events -------------------------------------------------------------------------


def test_wait_follows_the_event_stream_with_progress(stack: Stack) -> None:
    """interval=1000: had wait() fallen back to polling it could not finish within the timeout."""
    seen: list[dict] = []
    with client_for(stack) as client:
        job = client.submit(TINY_SLUG, prompt=PROMPT, image=scene(), mask=box_mask(), num_inference_steps=12)
        result = job.wait(timeout=240, interval=1000, stream=True, on_progress=seen.append)
    assert result["status"] == "COMPLETED" and result["output"]
    assert seen[-1]["status"] == "COMPLETED"
    steps = [s["progress"]["step"] for s in seen if s["status"] == "PROCESSING"]
    assert steps and steps == sorted(steps) and steps[-1] <= 12


class EventRelay:
    """Forwards GET .../events to the API line by line as it streams. The first connection is cut after
    two whole events and half of a third. Records the Last-Event-ID of every connection."""

    def __init__(self, upstream: str, key: str) -> None:
        self.calls: list[str | None] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                last = self.headers.get("last-event-id")
                relay.calls.append(last)
                cut = len(relay.calls) == 1
                headers = {"x-api-key": key, **({"Last-Event-ID": last} if last else {})}
                try:
                    with httpx.stream("GET", upstream + self.path, headers=headers, timeout=120) as response:
                        self.send_response(response.status_code)
                        self.send_header("content-type", "text/event-stream")
                        self.end_headers()
                        relay.forward(response, self.wfile, cut=cut)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def forward(response: httpx.Response, out: BinaryIO, *, cut: bool) -> None:
        whole, previous = 0, ""
        for line in response.iter_lines():
            out.write(line.encode() + b"\n")
            out.flush()
            whole += line == "" and previous.startswith("data:")
            previous = line
            if cut and whole == 2:
                out.write(b'id: 9.9\nevent: progress\ndata: {"status": "PROC\n')
                return

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_events_resume_with_last_event_id_after_a_drop(embedded: Stack) -> None:
    with client_for(embedded) as client:
        job = client.submit(TINY_SLUG, prompt=PROMPT, image=scene(), mask=box_mask(), num_inference_steps=20)
    relay = EventRelay(embedded.base_url, embedded.user_key)
    try:
        with Client(relay.url, embedded.user_key) as relayed:
            events = list(relayed.job(job.request_id).events())
    finally:
        relay.stop()
    calls = relay.calls
    assert len(calls) >= 2 and calls[0] is None, calls
    assert calls[1] == events[1].id, "the reconnection must resume after the last whole event"
    ids = [tuple(int(p) for p in e.id.split(".")) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), f"events repeated or out of order: {ids}"
    assert "9.9" not in [e.id for e in events], "a half-received event was delivered"
    assert events[-1].event == "completed" and events[-1].data["output"]


# -- idempotency, batch, listing, v1 ------------------------------------------------------------


def test_idempotency_key(embedded: Stack) -> None:
    key = f"sdk-{time.time_ns()}"
    with client_for(embedded) as client:
        first = client.submit("erase", idempotency_key=key, prompt=PROMPT, image=scene(), mask=box_mask(), seed=4)
        again = client.submit("erase", idempotency_key=key, prompt=PROMPT, image=scene(), mask=box_mask(), seed=4)
        assert again.request_id == first.request_id and again.replayed and not first.replayed
        with pytest.raises(APIError) as conflict:
            client.submit("erase", idempotency_key=key, prompt=PROMPT, image=scene(), mask=box_mask(), seed=5)
        assert conflict.value.status_code == 409


def test_batch_with_valid_and_invalid_items(embedded: Stack, tmp_path: Path) -> None:
    good = {"prompt": PROMPT, "image": scene(), "mask": png_bytes(box_mask())}
    items = [good, {**good, "samples": 9}, {**good, "model": "no-such-model"}, {**good, "model": TINY_SLUG}]
    with client_for(embedded) as client:
        with pytest.raises(ValueError, match="1 to 100"):
            client.submit_batch([good] * 101, model="erase")
        batch = client.submit_batch(items, model="erase")
        assert (batch.accepted, batch.rejected) == (2, 2)
        assert set(batch.errors) == {1, 2} and "samples" in batch.errors[1] and "no-such-model" in batch.errors[2]
        jobs = batch.jobs
        assert jobs[1] is None and jobs[2] is None
        summary = batch.wait(interval=0.2)
        assert summary["done"] and summary["counts"] == {"COMPLETED": 2, "REJECTED": 2}
        saved = jobs[0].download(tmp_path)
    assert_kept_pixels(pixels(saved[0]))


def test_list_requests_pages_through_every_job(embedded: Stack) -> None:
    api_key, _ = _keys_of(embedded.cli("inpaint-admin", "keys", "create", "--name", "sdk-lister"))
    with client_for(embedded, api_key) as client:
        ids = [client.submit("erase", prompt=PROMPT, image=scene(), mask=box_mask()).request_id for _ in range(3)]
        assert [r["request_id"] for r in client.list_requests(page_size=2)] == ids[::-1]


def test_run_sync_answers_the_image(embedded: Stack) -> None:
    with client_for(embedded) as client:
        answer = client.run_sync("erase", prompt=PROMPT, image=scene(), mask=box_mask(), seed=3)
        as_json = client.run_sync("erase", prompt=PROMPT, image=scene(), mask=box_mask(), base64=True)
    assert answer.request_id and answer.seed == 3 and answer.content_type == "image/png"
    assert_kept_pixels(np.asarray(decode(answer.image).convert("RGB")))
    assert as_json.image.startswith(b"\x89PNG") and as_json.request_id != answer.request_id
