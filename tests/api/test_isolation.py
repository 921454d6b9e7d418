"""No key can take what every key shares (api/edge/admission.py, api/live/watcher.py): the real app under
uvicorn in a thread, on its embedded default, with small limits.

- one key's slow image URLs hold only its own request and fetch slots: its extra submits get 429
  with Retry-After at once, and another key's submit is served meanwhile;
- one key's event streams stop at its limit (429); another key still opens one;
- many open streams cost the database one read per tick, not one per stream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event

from api.app import create_app
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.keys import create_key
from storage.database.migrate import upgrade
from storage.settings import load_settings
from tests.support.http_server import Reply, ScriptedServer
from tests.support.images import job_body, png_bytes, scene
from tests.support.services import free_port, wait_for_port

SLOW_SECONDS = 4.0
PROMPT = 2.0
"""An answer this quick did not wait behind a slow fetch (the machine may be busy: not 0.1 s)."""


@dataclass
class Live:
    base: str
    keys: dict[str, str]
    app: Any


@contextmanager
def serving(tmp_path: Path, **settings: Any) -> Iterator[Live]:
    """The app under uvicorn on a loopback port, with two user keys, "a" and "b"."""
    config = load_settings(data_dir=tmp_path, **{"submit_unservable": "accept", **settings})  # no worker runs
    upgrade(config.resolved_database_url)
    engine = make_engine(config.resolved_database_url)
    with session_scope(make_session_factory(engine)) as session:
        keys = {name: create_key(session, name=name, is_admin=False, now=utcnow()).secret for name in ("a", "b")}
    engine.dispose()
    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield Live(f"http://127.0.0.1:{port}", keys, app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serving(
        tmp_path,
        allow_loopback_urls=True,
        max_requests_per_key=3,
        max_image_fetches_per_key=2,
        max_event_streams_per_key=3,
        fetch_timeout_seconds=10,
    ) as running:
        yield running


def test_a_client_at_its_limit_on_keep_alive_is_never_refused(tmp_path: Path) -> None:
    """The slot is free before the answer's last byte: a client's next request cannot find its own
    finished one still counted."""
    with serving(tmp_path, max_requests_per_key=1) as running, httpx.Client(base_url=running.base) as client:
        codes = [client.get("/v2/models", headers={"x-api-key": running.keys["a"]}).status_code for _ in range(300)]
    assert set(codes) == {200}, f"{codes.count(429)} of 300 sequential requests were refused"


def timed_post(base: str, key: str, body: dict[str, Any]) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = httpx.post(f"{base}/v2/erase", json=body, headers={"x-api-key": key}, timeout=30)
    return time.monotonic() - started, response


def test_one_keys_slow_urls_hold_only_its_own_slots(live: Live) -> None:
    images = ScriptedServer().start()
    images.routes["/slow.png"] = Reply(
        body=png_bytes(scene()), headers={"Content-Type": "image/png"}, delay=SLOW_SECONDS
    )
    try:
        slow = job_body(image=f"{images.url}/slow.png")
        with ThreadPoolExecutor(8) as pool:
            hogs = [pool.submit(timed_post, live.base, live.keys["a"], slow) for _ in range(6)]
            time.sleep(0.5)  # A's submits are in: two fetch, the rest were refused
            other = timed_post(live.base, live.keys["b"], job_body())
            results = [h.result(timeout=30) for h in hogs]
    finally:
        images.stop()
    statuses = sorted(response.status_code for _, response in results)
    assert statuses == [200, 200, 429, 429, 429, 429], [r.text for _, r in results]
    for took, response in results:
        if response.status_code == 429:
            assert took < PROMPT, f"a 429 took {took:.2f} s: over a limit must be refused at once, never queued"
            assert int(response.headers["Retry-After"]) >= 1
            assert "limit" in response.json()["error"], response.json()
    refusals = " ".join(r.json()["error"] for _, r in results if r.status_code == 429)
    assert "INPAINT_MAX_IMAGE_FETCHES_PER_KEY=2" in refusals and "INPAINT_MAX_REQUESTS_PER_KEY=3" in refusals
    took, response = other
    assert response.status_code == 200, response.text
    assert took < PROMPT, f"another key's submit waited {took:.2f} s behind the slow one"


async def first_event(client: httpx.AsyncClient, url: str, key: str, opened: list[Any]) -> tuple[int, str]:
    """Open a stream and keep it open (in `opened`); its status and its first event's name."""
    request = client.build_request("GET", url, headers={"x-api-key": key})
    response = await client.send(request, stream=True)
    opened.append(response)
    if response.status_code != 200:
        await response.aread()
        return response.status_code, ""
    lines = response.aiter_lines()
    opened.append(lines)  # leaving an `async for` early would close the stream: keep the iterator alive
    while (line := await anext(lines)) is not None:
        if line.startswith("event: "):
            return 200, line.removeprefix("event: ")
    return 200, ""


def test_event_streams_stop_at_the_keys_limit_and_cost_one_read_per_tick(live: Live) -> None:
    context = live.app.state.context
    ids = [
        httpx.post(f"{live.base}/v2/erase", json=job_body(), headers={"x-api-key": k}).json()["request_id"]
        for k in (live.keys["a"], live.keys["b"])
    ]
    statements = {"n": 0}

    def count(*_: Any) -> None:
        statements["n"] += 1

    async def scenario() -> tuple[list[tuple[int, str]], tuple[int, str], int]:
        opened: list[Any] = []
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=live.base, timeout=10, limits=limits) as client:
            url = f"/v2/requests/{ids[0]}/events"
            mine = [await first_event(client, url, live.keys["a"], opened) for _ in range(4)]
            theirs = await first_event(client, f"/v2/requests/{ids[1]}/events", live.keys["b"], opened)
            event.listen(context.engine, "before_cursor_execute", count)
            await asyncio.sleep(2.0)  # four streams open and waiting: the watcher reads for all of them
            event.remove(context.engine, "before_cursor_execute", count)
            for response in opened[::-1]:
                await response.aclose()
        return mine, theirs, statements["n"]

    mine, theirs, reads = asyncio.run(scenario())
    assert mine[:3] == [(200, "queued")] * 3 and mine[3][0] == 429, mine
    assert theirs == (200, "queued"), theirs
    # One watcher: 8 ticks in 2 s, each one read, plus a queue-position read a second. One poll
    # per stream every 0.2 s (as before the watcher) would be 4 x 10 x 2 = 80 reads at least.
    assert reads <= 20, f"{reads} statements in 2 s for 4 open streams"
