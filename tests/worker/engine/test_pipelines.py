"""The resident cache: least recently used models are dropped past the memory budget, and a job
for a model no longer resident loads it again."""

from __future__ import annotations

import numpy as np

from tests.support.images import box_mask, scene
from worker.engine.pipelines import PipelineCache, measure_bytes

GB = 1024**3


def linear(n: int):
    import torch

    return torch.nn.Linear(n, n)


def test_measure_counts_parameters_once() -> None:
    layer = linear(10)
    assert measure_bytes(layer) == (10 * 10 + 10) * 4
    assert measure_bytes(object()) == 0


def test_least_recently_used_entries_go_past_the_budget() -> None:
    size = measure_bytes(linear(50))
    cache = PipelineCache("cpu", budget_gb=2.5 * size / GB)
    loads: list[str] = []

    def get(name: str):
        return cache.component("test", name, lambda: loads.append(name) or linear(50))

    first = get("a")
    get("b")
    assert get("a") is first and loads == ["a", "b"], "a resident entry is not loaded again"
    get("c")  # over budget: b is the least recently used
    assert [r["source"] for r in cache.resident()] == ["a", "c"]
    get("b")
    assert loads == ["a", "b", "c", "b"] and [r["source"] for r in cache.resident()] == ["c", "b"]
    assert cache.evict_source("c") == 1 and cache.clear() == 1 and cache.resident() == []


def test_a_job_reloads_a_model_the_budget_dropped(bench) -> None:
    first = PipelineCache("cpu")
    try:
        bench.run("sdxl-inpaint", {}, scene(), box_mask(), cache=first)
        xl_bytes = sum(r["bytes"] for r in first.resident())
    finally:
        first.clear()
    cache = PipelineCache("cpu", budget_gb=1.2 * xl_bytes / GB)
    try:
        a = bench.pixels("sdxl-inpaint", {"seed": 1}, scene(), box_mask(), cache=cache)
        bench.run("tiny-sd15", {}, scene(), box_mask(), cache=cache)
        assert [r["kind"] for r in cache.resident()] == ["sd15"], "the SDXL pipeline should have been dropped"
        again = bench.pixels("sdxl-inpaint", {"seed": 1}, scene(), box_mask(), cache=cache)
        assert np.array_equal(a, again)
        assert [r["kind"] for r in cache.resident()] == ["sdxl"]
    finally:
        cache.clear()
