"""What a worker reports it can load: worker.engine.availability, and the failures PipelineCache records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.contract.specs import ModelSpec
from storage.errors import JobFailure
from storage.settings import load_settings
from tests.support.http_server import ScriptedServer
from worker.engine.availability import FailedLoads, HubProbe, weights_state
from worker.engine.pipelines import PipelineCache

NOTHING: frozenset[str] = frozenset()


class Unreachable(HubProbe):
    def reachable(self) -> bool:
        return False


def state(source: str, *, resident: frozenset[str] = NOTHING, failed: FailedLoads | None = None, **kwargs) -> dict:
    hub = kwargs.pop("hub", Unreachable())
    return weights_state(source, resident=resident, failed=failed or FailedLoads(), hub=hub, **kwargs).as_json()


def test_local_folder_file_and_missing_path(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    assert state(str(folder))["state"] == "missing", "an empty folder holds no weights"
    (folder / "model_index.json").write_text("{}")
    assert state(str(folder)) == {"state": "present"}
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"x")
    assert state(str(checkpoint)) == {"state": "present"}
    gone = state(str(tmp_path / "gone"))
    assert gone["state"] == "missing" and "local path does not exist" in gone["reason"]
    assert str(tmp_path) not in gone["reason"], "a worker's paths are not shown to clients"


def test_resident_wins_over_everything(tmp_path: Path) -> None:
    failed = FailedLoads()
    failed.record("org/model", "it broke")
    assert state("org/model", resident=frozenset({"org/model"}), failed=failed) == {"state": "loaded"}


def test_hub_id_not_cached_says_what_to_do_when_the_hub_is_unreachable(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    missing = state("stable-diffusion-v1-5/stable-diffusion-inpainting")
    assert missing["state"] == "missing"
    assert "hf download stable-diffusion-v1-5/stable-diffusion-inpainting" in missing["reason"]
    assert "inpaint-admin models register" in missing["reason"]


def test_hub_id_in_the_cache_is_present(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--org--model" / "snapshots" / "abc123"
    (snapshot / "unet").mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (cache / "models--org--model" / "refs").mkdir()
    (cache / "models--org--model" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert state("org/model")["state"] == "missing", "a model index without UNet weights is not loadable"
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    assert state("org/model") == {"state": "present"}


def test_hub_probe_asks_the_endpoint_and_honours_offline(monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = ScriptedServer().start()  # any HTTP answer (a 501 to HEAD here) means the hub is up
    try:
        probe = HubProbe(endpoint=hub.url)
        assert probe.reachable()
        assert state("org/not-cached", hub=probe) == {"state": "download"}
    finally:
        hub.stop()
    assert probe.reachable(), "the answer is kept for a while, not asked per heartbeat"
    assert not HubProbe(endpoint="http://127.0.0.1:9").reachable(), "nothing listens on the discard port"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not HubProbe(endpoint="http://127.0.0.1:9", ttl=0).reachable()


def test_a_local_pickle_the_settings_refuse_is_missing(tmp_path: Path) -> None:
    from worker.engine.checkpoints import checkpoint_present

    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"x")
    refusing = load_settings(data_dir=tmp_path, allow_pickle_checkpoints=False)
    allowing = load_settings(data_dir=tmp_path, allow_pickle_checkpoints=True)
    assert state(str(pickle), checkpoint_present=lambda s: checkpoint_present(s, refusing))["state"] == "missing"
    assert state(str(pickle), checkpoint_present=lambda s: checkpoint_present(s, allowing)) == {"state": "present"}


def test_checkpoint_url_is_fetched_at_first_use_or_present_once_cached() -> None:
    url = "https://models.example/model.safetensors"
    assert state(url) == {"state": "download"}
    assert state(url, checkpoint_present=lambda source: source == url) == {"state": "present"}


def test_a_failed_load_is_reported_until_it_expires_or_is_forgotten(monkeypatch, tmp_path: Path) -> None:
    failed = FailedLoads(ttl=60)
    failed.record("org/model", "model 'm' could not be loaded: broken")
    assert failed.changed() and not failed.changed()
    assert state("org/model", failed=failed) == {"state": "failed", "reason": "it could not be loaded: broken"}, (
        "the weights' state, not the name of the model whose job tried them (several may share them)"
    )
    failed.forget("org/model")
    assert state("org/model", failed=failed)["state"] == "missing"
    expiring = FailedLoads(ttl=0)
    expiring.record("org/model", "broken")
    assert state("org/model", failed=expiring)["state"] == "missing", "retried once the failure is old"


def test_pipeline_cache_records_failed_loads_and_forgets_them_on_success(tmp_path: Path) -> None:
    cache = PipelineCache("cpu", budget_gb=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}))
    spec = ModelSpec(slug="broken", family="sd15", source=str(tmp_path / "absent"))
    with pytest.raises(JobFailure):
        cache.get(spec)
    assert "could not be loaded" in (cache.failed.reason(spec.source) or "")

    def fails() -> object:
        raise JobFailure("model_unavailable", "no weights")

    with pytest.raises(JobFailure):
        cache.component("vae", "org/vae", fails)
    assert cache.failed.reason("org/vae") == "no weights"
    cache.component("vae", "org/vae", lambda: object())
    assert cache.failed.reason("org/vae") is None
