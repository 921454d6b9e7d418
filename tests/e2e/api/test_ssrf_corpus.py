"""SSRF corpus: many spellings of a URL that leads to a canary listening on loopback, submitted as
`image` and as `mask` through the real API of a stack whose loopback switch is off (the default).

The canary must receive zero connections, every request must get a 400 naming the field, nothing
may be queued, and no answer may reveal an address the URL did not spell out itself.
A positive control sends the plain URL to a stack with the switch on: there the canary is reached.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from storage.database.models import Job
from tests.support.db import stack_session
from tests.support.http_server import Reply, ScriptedServer
from tests.support.images import b64, box_mask, png_bytes, scene
from tests.support.stack import Stack

INTERNAL_ADDRESSES = ("127.0.0.1", "::1", "0.0.0.0", "2130706433")


def ssrf_urls(port: int) -> list[str]:
    """Each of these reaches 127.0.0.1:port or [::1]:port, or would if it were followed naively."""
    path = "/canary.png"
    hosts = [
        "127.0.0.1",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "127.0.0.1.",
        "127.255.255.254",
        "0.0.0.0",
        "0",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.0x0.0x0.0x1",
        "0177.0.0.1",
        "017700000001",
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "[2002:7f00:1::]",
        "[::1%25lo]",
        "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ",
        "127。0。0。1",
        "１２７.０.０.１",
    ]
    urls = [f"http://{host}:{port}{path}" for host in hosts]
    urls += [
        f"https://127.0.0.1:{port}{path}",
        f"HTTP://LocalHost:{port}{path}",
        f"http://user:secret@127.0.0.1:{port}{path}",
        f"http://example.com@127.0.0.1:{port}{path}",
        f"http://127.0.0.1:{port}@example.com{path}",
        f"http://127.0.0.1:{port}#@example.com{path}",
        f"http://example.com#@127.0.0.1:{port}{path}",
        f"http://127.0.0.1:{port}\\@example.com{path}",
        f"http://localhost:{port}{path}?next=https://example.com/",
        f"ftp://127.0.0.1:{port}{path}",
        f"gopher://127.0.0.1:{port}/_GET%20{path}",
        f"dict://127.0.0.1:{port}/info",
        f"file:///proc/self/environ#127.0.0.1:{port}",
        f"//127.0.0.1:{port}{path}",
        f"http:/127.0.0.1:{port}{path}",
        f" http://127.0.0.1:{port}{path}",
        # no canary behind these, but each must be refused before any connection is tried
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[ff02::1]/",
    ]
    return urls


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An API process with the defaults that matter here: the loopback switch off."""
    workdir = tmp_path_factory.mktemp("stack-strict")
    stack = Stack(
        name="strict",
        workdir=workdir,
        env={
            "INPAINT_DATA_DIR": str(workdir / "data"),
            "INPAINT_ALLOW_LOOPBACK_URLS": "false",
            "INPAINT_FETCH_TIMEOUT_SECONDS": "3",
            "INPAINT_RATE_LIMIT_PER_MINUTE": "0",
            "INPAINT_SUBMIT_UNSERVABLE": "accept",  # no worker runs: submits are queued
        },
    )
    stack.cli("inpaint-admin", "migrate")
    stack.user_key = re.findall(r"iq_\S+", stack.cli("inpaint-admin", "keys", "create", "--name", "user"))[0]
    stack.start_api()
    yield stack
    stack.stop_all()


@pytest.fixture
def canaries() -> Iterator[list[ScriptedServer]]:
    """The canary on 127.0.0.1 and, on the same port, on ::1; both would serve a valid PNG."""
    first = ScriptedServer().start()
    servers = [first]
    try:
        servers.append(ScriptedServer(port=first.port, host="::1").start())
    except OSError:
        pass  # no IPv6 loopback here: the IPv4 canary still counts
    for server in servers:
        server.routes["/canary.png"] = Reply(200, png_bytes(scene()), {"content-type": "image/png"})
    yield servers
    for server in servers:
        server.stop()


def submit(stack: Stack, field: str, url: str) -> httpx.Response:
    body: dict[str, Any] = {"prompt": "x", "image": b64(scene()), "mask": b64(box_mask()), field: url}
    with stack.client() as client:
        return client.post("/v2/erase", json=body)


def count_jobs(stack: Stack) -> int:
    with stack_session(stack) as session:
        return int(session.execute(select(func.count()).select_from(Job)).scalar_one())


def test_every_spelling_is_refused_and_the_canary_sees_nothing(strict: Stack, canaries: list[ScriptedServer]) -> None:
    urls = ssrf_urls(canaries[0].port)
    answers: Counter[str] = Counter()
    for url in urls:
        for field in ("image", "mask"):
            response = submit(strict, field, url)
            body = response.json()
            assert response.status_code == 400, (url, field, response.status_code, body)
            assert body["error"].startswith(f"{field}:"), (url, body)
            assert body["errors"][0]["field"] == field
            for address in INTERNAL_ADDRESSES:
                if address not in url:
                    assert address not in response.text, f"{url}: the answer reveals {address}: {body}"
            assert "Traceback" not in response.text
            answers[re.sub(r"'[^']*'", "'…'", body["error"].split(": ", 1)[1])] += 1
    print(f"\nSSRF corpus: {len(urls)} URLs x 2 fields = {sum(answers.values())} requests, all 400:")
    for message, count in answers.most_common():
        print(f"  {count:3d}  {message}")
    assert [c.connections for c in canaries] == [0] * len(canaries), "a refused URL reached the canary"
    assert count_jobs(strict) == 0, "a refused request was queued"


def test_positive_control_the_canary_is_reached_when_loopback_is_allowed(
    embedded: Stack, canaries: list[ScriptedServer]
) -> None:
    """The same canary and request, on a stack with the switch on: so the corpus test can fail."""
    response = submit(embedded, "image", f"http://localhost:{canaries[0].port}/canary.png")
    assert response.status_code == 200, response.text
    assert canaries[0].connections == 1
    assert canaries[0].received[0].headers["host"] == f"localhost:{canaries[0].port}"
    embedded.wait(response.json()["request_id"])


def test_an_unreachable_url_does_not_reveal_the_resolved_address(embedded: Stack) -> None:
    """A name that resolves to loopback, on a stack that allows loopback, with nothing listening."""
    from tests.support.services import free_port

    response = submit(embedded, "image", f"http://localhost:{free_port()}/gone.png")
    assert response.status_code == 400
    assert "could not connect" in response.json()["error"]
    for address in INTERNAL_ADDRESSES:
        assert address not in response.text
