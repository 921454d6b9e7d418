"""What a weights source names, from the string alone, and the checkpoint fields of specs and assets."""

from __future__ import annotations

import pytest

from storage.contract.assets import AssetSpec
from storage.contract.sources import file_suffix, is_pickle, is_single_file, is_url
from storage.contract.specs import ModelSpec

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("source", "single", "pickle"),
    [
        ("stable-diffusion-v1-5/stable-diffusion-inpainting", False, False),
        ("/models/sd15", False, False),
        ("./models/sd15", False, False),
        ("/models/dreamshaper_8.safetensors", True, False),
        ("/models/Dreamshaper_8.SAFETENSORS", True, False),
        ("/models/v1-5-pruned.ckpt", True, True),
        ("/models/model.pt", True, True),
        ("/models/model.pth", True, True),
        ("./model.bin", True, True),
        ("https://civitai.com/api/download/models/128713", True, False),
        ("https://example.com/x/model.safetensors?download=true", True, False),
        ("HTTP://example.com/v1-5.ckpt", True, True),
        ("org/model.safetensors", False, False),  # a hub id that looks like a file is still a hub id
    ],
)
def test_sources_are_told_apart_by_their_spelling(source: str, single: bool, pickle: bool) -> None:
    assert is_single_file(source) is single
    assert is_pickle(source) is pickle


def test_the_suffix_of_a_url_is_its_paths() -> None:
    assert file_suffix("https://h/a/model.safetensors?x=1.ckpt") == ".safetensors"
    assert file_suffix("https://h/a/download") == ""
    assert is_url("https://h/") and is_url("http://h/") and not is_url("ftp://h/x.safetensors")


def test_sha256_and_config_belong_to_single_file_models() -> None:
    spec = ModelSpec(slug="m", family="sd15", source="/m/x.safetensors", sha256=SHA.upper(), config="/m/cfg")
    assert spec.sha256 == SHA.upper() and spec.config == "/m/cfg"
    with pytest.raises(ValueError, match="single-file checkpoint"):
        ModelSpec(slug="m", family="sd15", source="org/repo", sha256=SHA)
    with pytest.raises(ValueError, match="single-file checkpoint"):
        ModelSpec(slug="m", family="sdxl", base_model="SDXL", config="org/repo")
    with pytest.raises(ValueError, match="sha256"):
        ModelSpec(slug="m", family="sd15", source="/m/x.safetensors", sha256="abc")


def test_only_a_single_file_base_model_has_sha256_and_config() -> None:
    base = AssetSpec(kind="base_model", name="B", source="https://h/b.safetensors", sha256=SHA, config="org/xl")
    assert base.sha256 == SHA
    with pytest.raises(ValueError, match="base_model"):
        AssetSpec(kind="vae", name="v", source="/v/x.safetensors", sha256=SHA)
    with pytest.raises(ValueError, match="base_model"):
        AssetSpec(kind="base_model", name="B", source="org/xl", sha256=SHA)
