"""torch.compile in shape buckets (worker.engine.compiling) on the tiny pipeline, loaded through the real loader.

Inductor compiles for the CPU here, with the system C++ compiler. The module compiles
one graph, the tiny UNet at 64x64 and batch 2 (one job, guidance on): about 90 s on
a 2-core machine, paid by the first test that runs a job at that size. Every other
call runs eager, or that graph again, or (in a second process) that graph from the
compile cache. A call ran compiled when the profiler saw dynamo's
"Torch-Compiled Region" for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from storage.contract.params import JobParams
from storage.settings import load_settings
from tests.support.images import box_mask, scene

# torch.compile imports torch.utils.mkldnn (through inductor's pre-grad passes), which still
# decorates with torch.jit.script_method: torch's own deprecation, on any device.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

BUCKET = (64, 64)
ROOT = Path(__file__).resolve().parents[3]


def params(**overrides: object) -> JobParams:
    base = dict(
        prompt="a cat",
        negative_prompt=None,
        samples=1,
        scheduler="DDIM",
        num_inference_steps=2,
        guidance_scale=7.5,
        strength=1.0,
        seed=3,
        width=BUCKET[0],
        height=BUCKET[1],
    )
    return JobParams(**{**base, **overrides})


def test_the_default_buckets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("INPAINT_TORCH_COMPILE", "INPAINT_COMPILE_SIZES", "INPAINT_COMPILE_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(data_dir=tmp_path)
    assert not settings.torch_compile
    assert settings.compile_sizes == ((512, 512), (768, 768), (1024, 1024), (1024, 768), (768, 1024))
    assert settings.resolved_compile_cache_dir == (tmp_path / "compile-cache").resolve()
    monkeypatch.setenv("INPAINT_COMPILE_SIZES", " 1024x768, 64X48 ")
    assert load_settings().compile_sizes == ((1024, 768), (64, 48))


@pytest.mark.parametrize("entry", ["513x512", "512x0", "512x8192", "512", "ax512", "512x512x8"])
def test_a_bad_bucket_names_the_variable_and_the_entry(monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    monkeypatch.setenv("INPAINT_COMPILE_SIZES", f"512x512,{entry}")
    with pytest.raises(ValidationError) as raised:
        load_settings()
    message = raised.value.errors()[0]["msg"]
    assert "INPAINT_COMPILE_SIZES" in message and entry in message, message


def test_compile_options_follow_the_settings(tmp_path: Path) -> None:
    from worker.engine.compiling import CompileOptions

    assert CompileOptions.from_settings(load_settings(data_dir=tmp_path, torch_compile=False)) is None
    options = CompileOptions.from_settings(
        load_settings(data_dir=tmp_path, torch_compile=True, compile_sizes="768x512", max_batch_size=3)
    )
    assert options == CompileOptions(
        sizes=((768, 512),), max_batch_size=3, cache_dir=(tmp_path / "compile-cache").resolve()
    )


def test_unet_batches_are_the_ones_a_worker_can_produce() -> None:
    from worker.engine.compiling import unet_batches

    assert unet_batches(1) == {1, 2}
    assert unet_batches(3) == {1, 2, 3, 4, 6}


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh compile cache; TORCHINDUCTOR_CACHE_DIR, which compiling sets, is restored afterwards."""
    path = tmp_path_factory.mktemp("compile-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(path))
        yield path


def load_tiny(model_dir: Path, cache_dir: Path | None) -> Any:
    from worker.engine.compiling import CompileOptions
    from worker.engine.pipelines import PipelineCache
    from worker.tiny.sd15 import tiny_spec

    options = None if cache_dir is None else CompileOptions(sizes=(BUCKET,), max_batch_size=1, cache_dir=cache_dir)
    return PipelineCache("cpu", compile_options=options).get(tiny_spec("tiny", str(model_dir)))


@pytest.fixture(scope="module")
def compiled(tiny_model_dir: Path, compile_cache: Path) -> Any:
    return load_tiny(tiny_model_dir, compile_cache)


@pytest.fixture(scope="module")
def eager(tiny_model_dir: Path) -> Any:
    return load_tiny(tiny_model_dir, None)


def count_compiled(call: Callable[[], Any]) -> tuple[Any, int]:
    """What `call` returns, and how many times it ran compiled code."""
    import torch

    with torch.profiler.profile() as profile:
        result = call()
    return result, sum(event.name.startswith("Torch-Compiled Region") for event in profile.events())


def run_job(inpainter: Any, job: JobParams, components: Any = None) -> tuple[np.ndarray, int]:
    """(pixels, compiled UNet calls) of one job."""
    from worker.engine.inference import inpaint

    size = (job.width, job.height)
    images, calls = count_compiled(
        lambda: inpaint(inpainter, job, scene(size), box_mask(size), on_step=lambda s, t: None, components=components)
    )
    return np.asarray(images[0]).astype(int), calls


def graph_counts() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {
        "graphs": counters["stats"]["unique_graphs"],
        "hits": counters["inductor"]["fxgraph_cache_hit"],
        "misses": counters["inductor"]["fxgraph_cache_miss"],
    }


def test_a_bucket_job_runs_compiled_with_the_eager_result(compiled: Any, eager: Any) -> None:
    pixels, calls = run_job(compiled, params())
    after = graph_counts()
    assert calls == 2, "each of the 2 steps' UNet passes should run compiled"
    assert after["misses"] >= 1 and after["hits"] == 0, "compiled here, into a fresh cache"
    expected, eager_calls = run_job(eager, params())
    assert eager_calls == 0 and "forward" not in vars(eager.pipe.unet), "compile off must leave the UNet alone"
    assert np.abs(pixels - expected).max() <= 2
    again, calls = run_job(compiled, params(seed=4))
    assert calls == 2 and graph_counts()["graphs"] == after["graphs"], "the same bucket compiled again"
    assert not np.array_equal(again, pixels)


@pytest.mark.parametrize("size", [(48, 32), (32, 64), (96, 64), (128, 128)])
def test_another_size_runs_eager_and_compiles_nothing(compiled: Any, eager: Any, size: tuple[int, int]) -> None:
    before = graph_counts()
    pixels, calls = run_job(compiled, params(width=size[0], height=size[1]))
    assert calls == 0 and graph_counts() == before
    assert np.array_equal(pixels, run_job(eager, params(width=size[0], height=size[1]))[0])
    assert compiled.pipe.unet.forward.compiled_shapes <= {(*BUCKET, 2)}


def test_a_batch_no_job_can_produce_runs_eager(compiled: Any) -> None:
    import torch

    from worker.engine.compiling import VARIANTS

    unet = compiled.pipe.unet
    largest = max(unet.forward.batches)
    assert largest == 8, "the tiny spec allows 4 samples, doubled by guidance"
    assert torch._dynamo.config.recompile_limit >= len(unet.forward.batches) * VARIANTS
    latents = torch.zeros(largest + 1, unet.config.in_channels, BUCKET[1] // 8, BUCKET[0] // 8)
    text = torch.zeros(largest + 1, 77, unet.config.cross_attention_dim)
    before = graph_counts()
    with torch.no_grad():
        _, calls = count_compiled(lambda: unet(latents, torch.tensor(10), encoder_hidden_states=text))
    assert calls == 0 and graph_counts() == before


def test_a_lora_job_runs_eager(compiled: Any, tmp_path: Path) -> None:
    from worker.engine.types import JobComponents, NamedSource
    from worker.tiny.assets import save_tiny_lora
    from worker.tiny.sd15 import build_tiny_pipeline

    lora = save_tiny_lora(build_tiny_pipeline(), tmp_path / "lora", seed=9)
    components = JobComponents(loras=(NamedSource(name="tiny-lora", source=str(lora)),))
    run_job(compiled, params())
    before = graph_counts()
    _, calls = run_job(compiled, params(), components)
    assert calls == 0, "a UNet with PEFT layers must not run the graph compiled without them"
    _, calls = run_job(compiled, params())
    assert calls == 2, "once the LoRA is gone the bucket runs compiled again"
    assert graph_counts() == before, "taking the LoRA off made the graph compile again"


PROCESS = """
import json, sys, time
from pathlib import Path
from torch._dynamo.utils import counters
from tests.worker.engine.test_compiling import load_tiny, params, run_job
inpainter = load_tiny(Path(sys.argv[1]), Path(sys.argv[2]))
started = time.perf_counter()
_, calls = run_job(inpainter, params())
print(json.dumps({"calls": calls, "seconds": time.perf_counter() - started, **counters["inductor"],
                  **counters["aot_autograd"]}))
"""


def test_the_compile_cache_outlives_the_process(
    compiled: Any, compile_cache: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A second process (a restarted worker) loads the graph this one compiled from INPAINT_COMPILE_CACHE_DIR,
    even though its own TORCHINDUCTOR_CACHE_DIR points at an empty directory."""
    run_job(compiled, params())
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "elsewhere")}
    done = subprocess.run(
        [sys.executable, "-c", PROCESS, str(tiny_model_dir), str(compile_cache)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["calls"] == 2
    assert seen.get("fxgraph_cache_hit", 0) >= 1 and seen.get("fxgraph_cache_miss", 0) == 0, seen
    assert seen.get("autograd_cache_hit", 0) >= 1, seen
