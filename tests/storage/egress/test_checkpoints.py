"""Checkpoint sources: the registration check (no fetch), and the worker's streaming download with redirects."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from storage.egress.checkpoints import CheckpointTooLarge, check_weights_source, download
from storage.egress.fetch import FetchError, FetchPolicy
from storage.errors import InvalidInput
from storage.settings import Settings, load_settings
from tests.support.http_server import Reply

LOOPBACK = FetchPolicy(timeout=5, max_bytes=1000, allow_loopback=True)


def settings(*, loopback: bool = False, pickle: bool = False) -> Settings:
    return load_settings(allow_loopback_urls=loopback, allow_pickle_checkpoints=pickle)


def fetched(url: str, policy: FetchPolicy = LOOPBACK) -> bytes:
    chunks: list[bytes] = []
    size = download(url, policy, chunks.append)
    assert size == sum(len(c) for c in chunks)
    return b"".join(chunks)


def test_a_download_follows_redirects_each_checked_like_the_first(http_server) -> None:
    http_server.routes["/model"] = Reply(302, headers={"Location": "/files/a"})
    http_server.routes["/files/a"] = Reply(307, headers={"Location": f"{http_server.url}/files/b.safetensors"})
    http_server.routes["/files/b.safetensors"] = Reply(200, b"weights" * 10)
    assert fetched(f"{http_server.url}/model") == b"weights" * 10
    assert [r.path for r in http_server.received] == ["/model", "/files/a", "/files/b.safetensors"]

    http_server.routes["/private"] = Reply(302, headers={"Location": "http://10.0.0.1/model.safetensors"})
    with pytest.raises(FetchError, match="not public"):
        fetched(f"{http_server.url}/private")
    http_server.routes["/loop"] = Reply(302, headers={"Location": "/loop"})
    with pytest.raises(FetchError, match="redirected more than 5 times"):
        fetched(f"{http_server.url}/loop")


def test_a_download_refuses_other_statuses_and_loopback_unless_allowed(http_server) -> None:
    http_server.routes["/gone"] = Reply(404, b"no")
    with pytest.raises(FetchError, match="HTTP 404"):
        fetched(f"{http_server.url}/gone")
    with pytest.raises(FetchError, match="not public"):
        fetched(f"{http_server.url}/gone", FetchPolicy(timeout=5, max_bytes=1000))


def test_a_declared_length_over_the_cap_is_refused_before_the_body(http_server) -> None:
    http_server.routes["/big"] = Reply(200, b"x" * 1001)
    with pytest.raises(CheckpointTooLarge, match="is 1001 bytes, more than the limit of 1000 bytes"):
        fetched(f"{http_server.url}/big")


@pytest.fixture
def unsized_server() -> Iterator[str]:
    """Answers one request with 5000 bytes and no Content-Length: the body ends when the connection does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 5000)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/model"
    listener.close()


def test_an_unsized_body_is_cut_at_the_cap(unsized_server: str) -> None:
    with pytest.raises(CheckpointTooLarge, match="more than the limit of 1000 bytes"):
        fetched(unsized_server)


@pytest.mark.parametrize("kind", ["sd15", "sdxl", "sdxl-controlnet", "base_model"])
def test_registration_refuses_pickles_unless_allowed(kind: str) -> None:
    with pytest.raises(InvalidInput, match=r"url: is a pickled checkpoint \(\.ckpt\)") as refused:
        check_weights_source("/models/v1-5.ckpt", field="url", kind=kind, settings=settings())
    assert refused.value.field == "url"
    check_weights_source("/models/v1-5.ckpt", field="url", kind=kind, settings=settings(pickle=True))
    check_weights_source("/models/v1-5.safetensors", field="url", kind=kind, settings=settings())


def test_registration_checks_a_urls_host_without_fetching(http_server) -> None:
    url = f"{http_server.url}/model.safetensors"
    with pytest.raises(InvalidInput, match="url: the host resolves to an address that is not public"):
        check_weights_source(url, field="url", kind="sd15", settings=settings())
    check_weights_source(url, field="url", kind="sd15", settings=settings(loopback=True))
    with pytest.raises(InvalidInput, match="must be an http or https URL"):
        check_weights_source("http://", field="url", kind="sd15", settings=settings())
    assert http_server.connections == 0, "a registration connected to the URL"


def test_only_model_checkpoints_may_be_urls() -> None:
    with pytest.raises(InvalidInput, match="vae_url: a vae is loaded from a hub id or a local path"):
        check_weights_source("https://h/vae.safetensors", field="vae_url", kind="vae", settings=settings())
    check_weights_source("/loras/x.bin", field="url", kind="lora", settings=settings())  # not a checkpoint
