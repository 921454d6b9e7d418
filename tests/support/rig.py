"""An in-process worker over the embedded default (SQLite, local images) with the tiny SD 1.5
pipeline registered: jobs are written as the API writes them and run by calling worker.jobs.runner."""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from storage.blobs.images import encode_png
from storage.blobs.store import input_key
from storage.database.engine import session_scope
from storage.database.jobs import create_job, get_job
from storage.database.keys import create_key
from storage.database.models import JobStatus
from storage.database.registry import register_model
from storage.settings import load_settings
from tests.support.images import box_mask, scene
from tests.support.tiny_models import Bench, tiny_spec

SLUG = "tiny-sd15"


@dataclasses.dataclass
class Rig:
    ctx: Any  # worker.jobs.context.InferenceContext
    bench: Bench
    key_id: int
    published: list[tuple]

    def submit(
        self, body: dict[str, Any], *, image: Image.Image | None = None, stored: dict[str, bytes] | None = None
    ) -> str:
        """Write a job for `image` (default scene()). `stored`: the input bytes by role, as they are
        stored (default: the image and box_mask() as PNG); a role left out has no key (no mask)."""
        image = image or scene()
        _, params = self.bench.params(SLUG, body, image.size)
        job_id = str(uuid.uuid4())
        stored = stored if stored is not None else {"image": encode_png(image), "mask": encode_png(box_mask())}
        keys = {role: input_key(job_id, role) for role in stored}
        for role, data in stored.items():
            self.ctx.blobs.put(keys[role], data)
        with session_scope(self.ctx.sessions) as session:
            create_job(
                session,
                job_id=job_id,
                api_key_id=self.key_id,
                model=SLUG,
                queue="inpaint",
                params=params.model_dump(mode="json"),
                input_keys=keys,
                base64_output=False,
                now=datetime.now(UTC),
            )
        return job_id

    def job(self, job_id: str) -> Any:
        with session_scope(self.ctx.sessions) as session:
            job = get_job(session, job_id)
            session.expunge(job)
            return job

    def pixels(self, job_id: str) -> list[np.ndarray]:
        job = self.job(job_id)
        assert job.status == JobStatus.COMPLETED.value, (job.status, job.error_message)
        return [np.asarray(Image.open(io.BytesIO(self.ctx.blobs.get(key))), dtype=np.int16) for key in job.output_keys]

    def with_settings(self, **update: Any) -> Any:
        """The same worker context with some settings changed."""
        return dataclasses.replace(self.ctx, settings=self.ctx.settings.model_copy(update=update))


@contextmanager
def tiny_rig(data_dir: Path, model_dir: Path, **settings: Any) -> Iterator[Rig]:
    from storage.stores import Stores
    from worker.jobs.context import InferenceContext

    config = load_settings(data_dir=data_dir, **settings)
    bench = Bench(config.resolved_database_url)
    published: list[tuple] = []
    stores = Stores.open(config)
    ctx = InferenceContext.build(config, publish=lambda *args, **kw: published.append(args), stores=stores)
    with session_scope(ctx.sessions) as session:
        register_model(session, tiny_spec(SLUG, "sd15", source=str(model_dir)), now=datetime.now(UTC))
        key_id = create_key(session, name="k", is_admin=False, now=datetime.now(UTC)).record.id
    try:
        yield Rig(ctx=ctx, bench=bench, key_id=key_id, published=published)
    finally:
        stores.close()
        bench.close()
