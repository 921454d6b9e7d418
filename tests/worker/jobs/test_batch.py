"""Dynamic batching, in-process through the worker's real path on the tiny SD 1.5 pipeline.

The same jobs are submitted twice: once run by a worker with max_batch_size 4 (one
pipeline call), once by a worker with batching off (one call each). Each job must
get the same image both ways, within floating-point tolerance.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from storage.database.engine import session_scope
from storage.database.models import JobStatus
from tests.support.rig import Rig, tiny_rig


@pytest.fixture
def rig(tmp_path, tiny_model_dir) -> Rig:
    with tiny_rig(tmp_path, tiny_model_dir, max_batch_size=4) as rig:
        yield rig


BODIES = [
    {"prompt": "a red door", "negative_prompt": "blurry", "seed": 11},
    {"prompt": "a blue boat on a lake", "negative_prompt": "text", "seed": 12, "mask_blur": 4},
    {"prompt": "moss", "negative_prompt": "people", "seed": 13, "invert_mask": True},
]


def test_a_batch_gives_each_job_the_image_it_would_get_alone(rig: Rig) -> None:
    from worker.jobs.runner import run_job

    batched = [rig.submit(body) for body in BODIES]
    other_steps = rig.submit({**BODIES[0], "num_inference_steps": 3})  # not compatible: stays queued
    outcomes = run_job(rig.ctx, batched[0])
    assert outcomes == {job_id: "COMPLETED" for job_id in batched}
    assert rig.job(other_steps).status == JobStatus.QUEUED.value
    for job_id in batched[1:]:
        assert run_job(rig.ctx, job_id) == {}, "a companion's own message must find it already done"

    single = [rig.submit(body) for body in BODIES]
    unbatched = rig.with_settings(max_batch_size=1)
    for job_id in single:
        assert run_job(unbatched, job_id) == {job_id: "COMPLETED"}

    for together, alone in zip(batched, single, strict=True):
        (a,), (b,) = rig.pixels(together), rig.pixels(alone)
        difference = np.abs(a - b)
        assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())
    first, second = rig.pixels(batched[0])[0], rig.pixels(batched[1])[0]
    assert np.abs(first - second).mean() > 1, "different prompts and seeds gave the same image"
    assert rig.job(batched[1]).inference_time == rig.job(batched[0]).inference_time


def test_jobs_that_cannot_share_a_call_run_alone(rig: Rig) -> None:
    from worker.jobs.runner import run_job

    leader = rig.submit({"prompt": "a", "seed": 1, "samples": 2})
    follower = rig.submit({"prompt": "b", "seed": 2, "samples": 2})
    assert run_job(rig.ctx, leader) == {leader: "COMPLETED"}
    assert rig.job(follower).status == JobStatus.QUEUED.value
    assert len(rig.pixels(leader)) == 2

    with_negative = rig.submit({"prompt": "a", "seed": 1, "negative_prompt": "x"})
    without = rig.submit({"prompt": "b", "seed": 2})
    assert run_job(rig.ctx, with_negative) == {with_negative: "COMPLETED"}
    assert rig.job(without).status == JobStatus.QUEUED.value


def test_a_companion_whose_input_is_gone_fails_alone(rig: Rig) -> None:
    from worker.jobs.runner import run_job

    leader, broken = rig.submit(BODIES[0]), rig.submit(BODIES[1])
    assert rig.ctx.blobs.delete_prefix(f"jobs/{broken}/input") == 2
    outcomes = run_job(rig.ctx, leader)
    assert outcomes == {leader: "COMPLETED", broken: "FAILED"}
    job = rig.job(broken)
    assert (job.error_code, job.error_message) == (
        "storage_unavailable",
        "the job's input images are no longer in object storage",
    )


def test_a_job_cancelled_mid_batch_drops_out_and_the_rest_go_on(rig: Rig) -> None:
    from datetime import timedelta

    from storage.database.jobs import fail_job
    from worker.jobs.attempt import Superseded
    from worker.jobs.batch import BatchProgress, claim_companions_for
    from worker.jobs.runner import claim

    first, second = rig.submit(BODIES[0]), rig.submit(BODIES[1])
    leader = claim(rig.ctx, first)
    assert leader is not None
    (companion,) = claim_companions_for(rig.ctx, leader)
    assert companion.job_id == second and rig.job(second).status == JobStatus.PROCESSING.value
    progress = BatchProgress(rig.ctx, [leader, companion])

    def cancel(job_id: str) -> None:
        with session_scope(rig.ctx.sessions) as session:
            assert fail_job(
                session, job_id, code="cancelled", message="cancelled", now=datetime.now(UTC), ttl=timedelta(hours=1)
            )

    cancel(second)
    progress(1, 2)
    assert progress.gone == {second}
    assert rig.job(first).progress_step == 1, "the leader's progress is still recorded"
    cancel(first)
    with pytest.raises(Superseded):
        progress(2, 2)


def test_a_batch_whose_jobs_are_all_cancelled_stops_and_records_nothing(rig: Rig, monkeypatch, caplog) -> None:
    from datetime import timedelta

    import worker.jobs.batch as batch
    import worker.jobs.runner as runner
    from storage.database.jobs import fail_job

    first, second = rig.submit(BODIES[0]), rig.submit(BODIES[1])
    real = batch.inpaint_batch

    def cancel_both_then_step(inpainter, jobs, *, on_step, components):
        with session_scope(rig.ctx.sessions) as session:
            for job_id in (first, second):
                fail_job(
                    session,
                    job_id,
                    code="cancelled",
                    message="cancelled",
                    now=datetime.now(UTC),
                    ttl=timedelta(hours=1),
                )
        on_step(1, 2)
        return real(inpainter, jobs, on_step=on_step, components=components)

    monkeypatch.setattr(batch, "inpaint_batch", cancel_both_then_step)
    assert runner.run_job(rig.ctx, first) == {}
    assert {rig.job(first).error_code, rig.job(second).error_code} == {"cancelled"}
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "a cancelled batch is not a crash"
