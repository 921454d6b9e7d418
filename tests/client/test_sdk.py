"""The Python SDK (client/inpaint_client) with no server: the forms encode_image takes, and the
configuration a Client reads from the environment. Against live stacks: tests/e2e/client/test_client.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from inpaint_client import Client, InpaintError, encode_image

from tests.support.images import b64, box_mask, data_uri, decode, png_bytes, scene


def test_encode_image_forms(tmp_path: Path) -> None:
    assert encode_image("https://example.com/a.png") == "https://example.com/a.png"
    assert encode_image(data_uri(box_mask())) == data_uri(box_mask())
    assert encode_image(png_bytes(scene())) == b64(scene())
    assert encode_image(b64(scene())) == b64(scene()), "base64 is sent as given"
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(scene()))
    assert encode_image(str(path)) == encode_image(path) == b64(scene())
    assert np.array_equal(
        np.asarray(decode(__import__("base64").b64decode(encode_image(scene())))), np.asarray(scene())
    )
    with pytest.raises(FileNotFoundError):
        encode_image(str(tmp_path / "missing.png"))
    with pytest.raises(TypeError):
        encode_image(12)


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INPAINT_API_URL", "INPAINT_API_KEY", "SEGMIND_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InpaintError, match="no API key"):
        Client()
    monkeypatch.setenv("SEGMIND_API_KEY", "sg_key")
    monkeypatch.setenv("INPAINT_API_URL", "https://inpaint.example/v1/")
    with Client() as client:
        assert client.base_url == "https://inpaint.example"
        assert client._headers["x-api-key"] == "sg_key"
    monkeypatch.setenv("INPAINT_API_KEY", "iq_key")
    with Client("http://h:1/v2") as client:
        assert client.base_url == "http://h:1" and client._headers["x-api-key"] == "iq_key"
