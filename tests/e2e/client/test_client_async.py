"""The SDK's AsyncClient against the live embedded stack: the same surface as Client, awaited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from inpaint_client import AsyncClient, InferenceFailed, InferenceTimeout

from tests.conftest import TINY_SLUG
from tests.support.images import box_mask, decode, png_bytes, scene
from tests.support.stack import Stack


def kept_pixels_equal(data: bytes) -> bool:
    out = np.asarray(decode(data).convert("RGB"))
    original, hole = np.asarray(scene()), np.asarray(box_mask()) > 127
    return bool(np.array_equal(out[~hole], original[~hole]))


def test_async_submit_events_wait_download(embedded: Stack, tmp_path: Path) -> None:
    async def scenario() -> None:
        seen: list[str] = []

        async def record(status: dict) -> None:
            seen.append(status["status"])

        async with AsyncClient(embedded.base_url, embedded.user_key) as client:
            job = await client.submit(
                TINY_SLUG,
                prompt="a red apple",
                image=scene(),
                mask=png_bytes(box_mask()),
                num_inference_steps=6,
                seed=9,
            )
            events = [event async for event in job.events()]
            assert events[-1].event == "completed" and events[-1].data["seed"] == 9
            result = await job.wait(stream=True, on_progress=record)
            assert result["status"] == "COMPLETED" and seen[-1] == "COMPLETED"
            (path,) = await job.download(tmp_path)
            assert kept_pixels_equal(path.read_bytes())

            others = await asyncio.gather(
                *(
                    client.run("erase", interval=0.1, prompt="-", image=scene(), mask=box_mask(), seed=s)
                    for s in (1, 2, 3)
                )
            )
            assert [r["seed"] for r in others] == [1, 2, 3]

    asyncio.run(scenario())


def test_async_failure_timeout_cancel_batch(embedded: Stack, tmp_path: Path) -> None:
    embedded.register_missing_model("async-missing", tmp_path)

    async def scenario() -> None:
        async with AsyncClient(embedded.base_url, embedded.user_key) as client:
            with pytest.raises(InferenceFailed) as failed:
                await client.run("async-missing", interval=0.1, prompt="-", image=scene(), mask=box_mask())
            assert failed.value.error_code == "model_unavailable"

            slow = await client.submit(TINY_SLUG, prompt="-", image=scene(), mask=box_mask(), num_inference_steps=50)
            with pytest.raises(InferenceTimeout) as late:
                await slow.wait(timeout=0.01, interval=0.01)
            assert late.value.request_id == slow.request_id
            assert (await slow.cancel())["cancelled"] is True
            with pytest.raises(InferenceFailed):
                await slow.wait(interval=0.1)

            batch = await client.submit_batch(
                [
                    {"prompt": "-", "image": scene(), "mask": box_mask()},
                    {"prompt": "-", "image": "not an image", "mask": box_mask()},
                ],
                model="erase",
            )
            assert (batch.accepted, batch.rejected) == (1, 1) and batch.jobs[1] is None
            summary = await batch.wait(interval=0.2)
            assert summary["counts"] == {"COMPLETED": 1, "REJECTED": 1}
            sync = await client.run_sync("erase", prompt="-", image=scene(), mask=box_mask())
            assert kept_pixels_equal(sync.image)

    asyncio.run(scenario())
