"""The reference points of api_throughput: FastAPI apps under uvicorn, as bare as a submit can be.

`create_app`: a bare JSON endpoint, nothing behind it. It takes the same routes and
bodies as the service and answers a small JSON body at once: no validation beyond
JSON, no database, no storage, no broker. `async` routes run on the event loop; the
`/sync` copies are plain `def` routes, which FastAPI runs in its thread pool as it
runs the service's own routes.

`create_durable_app`: the minimal durable submit. Each POST makes the three writes a
real submit makes, in the same order, and checks nothing: it puts the body's bytes
as one object (storage.blobs, the service's own store: a local directory, or S3),
inserts one row in a table of its own (`benchmark_baseline_submits`, in the service's
database, through the service's engine) and publishes one task by name to a queue
no worker consumes (storage.broker, the service's Celery settings). The writes run
in the thread pool, as the service's submit route does. It reads the service's
INPAINT_* variables, so started with a stack's environment it writes where that
stack writes.

    .venv/bin/python -m benchmarks.bare_app --port 8100
    .venv/bin/python -m benchmarks.bare_app --port 8101 --durable
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from storage.blobs.store import make_blob_store
from storage.broker import make_celery, publish_task
from storage.database.engine import make_engine
from storage.settings import load_settings

BASELINE_QUEUE = "benchmark-baseline"
"""A queue no worker consumes: the baseline's messages stay in the broker."""
BASELINE_TASK = "benchmark.baseline_submit"
BASELINE_ROWS = sa.Table(
    "benchmark_baseline_submits",
    sa.MetaData(),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("object_key", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def create_app() -> FastAPI:
    app = FastAPI(title="bare")

    @app.post("/v2/{model}")
    async def submit(model: str, body: dict[str, Any]) -> dict[str, str]:
        return {"request_id": str(uuid.uuid4()), "status": "QUEUED", "model": model}

    @app.get("/v2/requests/{job_id}/status")
    async def status(job_id: str) -> dict[str, str]:
        return {"request_id": job_id, "status": "COMPLETED"}

    @app.post("/sync/v2/{model}")
    def submit_sync(model: str, body: dict[str, Any]) -> dict[str, str]:
        return {"request_id": str(uuid.uuid4()), "status": "QUEUED", "model": model}

    @app.get("/sync/v2/requests/{job_id}/status")
    def status_sync(job_id: str) -> dict[str, str]:
        return {"request_id": job_id, "status": "COMPLETED"}

    return app


def create_durable_app() -> FastAPI:
    settings = load_settings()
    blobs = make_blob_store(settings)
    engine = make_engine(settings.resolved_database_url)
    # The benchmark's own table, beside the service's: not part of the schema, so not Alembic's.
    BASELINE_ROWS.metadata.create_all(engine)
    celery = make_celery(settings)

    def store_submit(model: str, data: bytes) -> str:
        job_id = str(uuid.uuid4())
        key = f"benchmark-baseline/{job_id}"
        blobs.put(key, data, content_type="application/json")
        with engine.begin() as conn:
            conn.execute(
                BASELINE_ROWS.insert().values(id=job_id, model=model, object_key=key, created_at=datetime.now(UTC))
            )
        publish_task(celery, BASELINE_TASK, job_id, queue=BASELINE_QUEUE)
        return job_id

    app = FastAPI(title="durable baseline")

    @app.post("/v2/{model}")
    async def submit(model: str, request: Request) -> dict[str, str]:
        job_id = await run_in_threadpool(store_submit, model, await request.body())
        return {"request_id": job_id, "status": "QUEUED", "model": model}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="benchmarks.bare_app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--durable", action="store_true", help="serve the minimal durable submit")
    args = parser.parse_args()
    # The same server settings as `inpaint-api` (api/main.py): one process, no access log.
    uvicorn.run(
        "benchmarks.bare_app:create_durable_app" if args.durable else "benchmarks.bare_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        proxy_headers=True,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
