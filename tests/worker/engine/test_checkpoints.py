"""Weights on this worker before a load: local checks, checkpoint URLs downloaded once into the model cache,
verified (sha256, safetensors or an allowed pickle) and renamed into place only when whole. No torch."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path

import pytest

from storage.contract.specs import ModelSpec
from storage.errors import JobFailure
from storage.settings import load_settings
from tests.support.http_server import Reply
from worker.engine.checkpoints import (
    CheckpointPolicy,
    checkpoint_present,
    hub_unreachable,
    local_weights,
    offline_message,
)


def safetensors_bytes(payload: bytes = b"\0" * 8) -> bytes:
    """A valid safetensors file holding one uint8 tensor."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}).encode()
    return len(header).to_bytes(8, "little") + header + payload


CHECKPOINT = safetensors_bytes(bytes(range(200)))
SHA = hashlib.sha256(CHECKPOINT).hexdigest()


def spec(source: str, **fields: object) -> ModelSpec:
    return ModelSpec(slug="community", family="sd15", source=source, **fields)  # type: ignore[arg-type]


def policy(tmp_path: Path, **fields: object) -> CheckpointPolicy:
    return CheckpointPolicy(
        **{"cache_dir": tmp_path / "cache", "max_bytes": 10_000, "timeout": 10, "allow_loopback": True} | fields  # type: ignore[arg-type]
    )


def failure(call, *args: object) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(JobFailure) as failed:
        call(*args)
    assert failed.value.code == "model_unavailable"
    return failed.value.message


def test_a_url_is_downloaded_once_verified_and_kept(http_server, tmp_path: Path) -> None:
    http_server.routes["/api/download/models/1"] = Reply(302, headers={"Location": "/cdn/x.safetensors"})
    http_server.routes["/cdn/x.safetensors"] = Reply(200, CHECKPOINT)
    url = f"{http_server.url}/api/download/models/1?token=secret"
    local = local_weights(spec(url, sha256=SHA.upper()), policy(tmp_path))
    path = Path(local.source)
    assert path.parent == tmp_path / "cache" and path.suffix == ".safetensors"
    assert path.read_bytes() == CHECKPOINT and local.sha256 == SHA.upper()
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == sorted(
        [path.name, path.with_suffix(".json").name]
    ), "no temporary file is left"

    requests = len(http_server.received)
    assert local_weights(spec(url, sha256=SHA), policy(tmp_path)).source == str(path)
    assert len(http_server.received) == requests, "a verified copy in the cache was downloaded again"
    settings = load_settings(model_cache_dir=tmp_path / "cache")
    assert checkpoint_present(url, settings) and not checkpoint_present(url + "&other", settings)


def test_a_sha256_mismatch_fails_naming_both_and_keeps_nothing(http_server, tmp_path: Path) -> None:
    http_server.routes["/x.safetensors"] = Reply(200, CHECKPOINT)
    url = f"{http_server.url}/x.safetensors"
    wrong = "0" * 64
    message = failure(local_weights, spec(url, sha256=wrong), policy(tmp_path))
    assert message == (
        f"model 'community' could not be loaded: its checkpoint's SHA-256 is {SHA}, but {wrong} was registered"
    )
    assert "token" not in message and str(tmp_path) not in message
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"], "an unverified download was kept"


def test_a_download_over_the_size_cap_fails_naming_the_limit_and_the_size(http_server, tmp_path: Path) -> None:
    http_server.routes["/x.safetensors"] = Reply(200, CHECKPOINT)
    message = failure(local_weights, spec(f"{http_server.url}/x.safetensors"), policy(tmp_path, max_bytes=100))
    assert message == (
        f"model 'community' could not be downloaded: the checkpoint is {len(CHECKPOINT)} bytes, more than the "
        "limit of 100 bytes (INPAINT_MAX_CHECKPOINT_BYTES)"
    )


def test_a_pickle_is_refused_unless_allowed_by_name_before_fetching_and_by_content_after(
    http_server, tmp_path: Path
) -> None:
    pickled = b"\x80\x02}q\x00." + b"\0" * 50
    http_server.routes["/download"] = Reply(200, pickled)
    message = failure(local_weights, spec(f"{http_server.url}/v1-5.ckpt"), policy(tmp_path))
    assert "pickled checkpoint (.ckpt)" in message and "INPAINT_ALLOW_PICKLE_CHECKPOINTS" in message
    assert http_server.received == [], "a pickle URL was fetched"
    message = failure(local_weights, spec(f"{http_server.url}/download"), policy(tmp_path))
    assert "served a file that is not safetensors" in message
    allowed = local_weights(spec(f"{http_server.url}/download"), policy(tmp_path, allow_pickle=True))
    assert allowed.source.endswith(".ckpt") and Path(allowed.source).read_bytes() == pickled


def test_concurrent_loads_of_one_url_download_it_once(http_server, tmp_path: Path) -> None:
    http_server.routes["/x.safetensors"] = Reply(200, CHECKPOINT, delay=0.5)
    url = f"{http_server.url}/x.safetensors"
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(local_weights(spec(url), policy(tmp_path)).source))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and len(set(results)) == 1
    assert Path(results[0]).read_bytes() == CHECKPOINT
    assert len(http_server.received) == 1, "the lock let two downloads of one URL run"


def test_a_dead_connection_leaves_no_partial_file(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + CHECKPOINT)  # then hangs up

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.safetensors"
    message = failure(local_weights, spec(url), policy(tmp_path))
    listener.close()
    assert message.startswith("model 'community' could not be downloaded: request failed")
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]


def test_local_sources_are_checked_before_any_load(tmp_path: Path) -> None:
    directory = tmp_path / "diffusers"
    directory.mkdir()
    assert local_weights(spec(str(directory)), None).source == str(directory)
    assert local_weights(spec("org/repo"), None).source == "org/repo", "hub ids are diffusers' business"
    assert failure(local_weights, spec(str(tmp_path / "gone.safetensors")), None).endswith(
        "its local path does not exist"
    )
    (tmp_path / "weights").write_bytes(CHECKPOINT)
    assert "not a .safetensors checkpoint" in failure(local_weights, spec(str(tmp_path / "weights")), None)
    (tmp_path / "m.ckpt").write_bytes(b"\x80\x02.")
    assert "pickled checkpoint (.ckpt)" in failure(local_weights, spec(str(tmp_path / "m.ckpt")), policy(tmp_path))
    assert local_weights(spec(str(tmp_path / "m.ckpt")), policy(tmp_path, allow_pickle=True))
    good = tmp_path / "m.safetensors"
    good.write_bytes(CHECKPOINT)
    assert local_weights(spec(str(good), sha256=SHA), None).source == str(good)
    assert f"is {SHA}, but {'1' * 64} was registered" in failure(local_weights, spec(str(good), sha256="1" * 64), None)
    missing_config = spec(str(good), config=str(tmp_path / "no-config"))
    assert "local config directory" in failure(local_weights, missing_config, None)


def test_without_a_policy_no_url_is_downloaded() -> None:
    assert "no model cache" in failure(local_weights, spec("https://example.com/x.safetensors"), None)


def test_checkpoint_present_names_single_files_on_this_machine(tmp_path: Path) -> None:
    settings = load_settings(model_cache_dir=tmp_path / "cache", allow_pickle_checkpoints=False)
    (tmp_path / "m.safetensors").write_bytes(CHECKPOINT)
    (tmp_path / "m.ckpt").write_bytes(b"\x80\x02.")
    assert checkpoint_present(str(tmp_path / "m.safetensors"), settings)
    assert not checkpoint_present(str(tmp_path / "m.ckpt"), settings), "a pickle this worker refuses"
    assert checkpoint_present(str(tmp_path / "m.ckpt"), settings.model_copy(update={"allow_pickle_checkpoints": True}))
    assert not checkpoint_present(str(tmp_path / "other.safetensors"), settings)
    assert not checkpoint_present("https://example.com/x.safetensors", settings)
    assert not checkpoint_present(str(tmp_path), settings) and not checkpoint_present("org/repo", settings)


def test_an_unreachable_hub_is_told_apart_and_explained() -> None:
    try:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except OSError as dns:
            raise OSError("Cannot load model org/repo: the model is not fully cached locally") from dns
    except OSError as exc:
        assert hub_unreachable(exc)
    assert not hub_unreachable(OSError("org/repo is not a valid model identifier"))
    message = offline_message("model 'm'", "org/repo")
    assert "the Hugging Face hub could not be reached" in message and "hf download org/repo" in message
    assert "inpaint-admin models register" in message
    assert "inpaint-admin assets register" in offline_message("vae 'v'", "org/vae")
