"""Building diffusers schedulers from scheduler names (the AUTOMATIC1111 ones in particular)."""

from __future__ import annotations

import pytest

from tests.storage.contract.test_schedulers import A1111_NAMES

# The scheduler config an SD 1.5 checkpoint ships (a PNDM config with Stable Diffusion's betas).
SD15_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


@pytest.mark.parametrize("name", sorted(A1111_NAMES))
def test_a1111_names_build_their_diffusers_scheduler(name: str) -> None:
    from worker.engine.schedulers import build_scheduler

    class_name, options = A1111_NAMES[name]
    scheduler = build_scheduler(name, SD15_CONFIG)
    assert type(scheduler).__name__ == class_name
    for option, value in options.items():
        assert scheduler.config[option] == value, option
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) >= 10


def test_plms_skips_the_runge_kutta_warm_up() -> None:
    from worker.engine.schedulers import build_scheduler

    assert build_scheduler("PLMS", {**SD15_CONFIG, "skip_prk_steps": False}).config.skip_prk_steps is True


@pytest.mark.parametrize("name", ["DPM adaptive", "Restart"])
def test_refused_names_are_never_built(name: str) -> None:
    from worker.engine.schedulers import build_scheduler

    with pytest.raises(ValueError, match="cannot be built"):
        build_scheduler(name, SD15_CONFIG)
