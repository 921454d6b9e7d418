"""The reference point of api_throughput: a bare FastAPI JSON endpoint under uvicorn, nothing behind it.

It takes the same routes and bodies as the service and answers a small JSON body
at once: no validation beyond JSON, no database, no storage, no broker. `async`
routes run on the event loop; the `/sync` copies are plain `def` routes, which
FastAPI runs in its thread pool as it runs the service's own routes.

    .venv/bin/python -m benchmarks.bare_app --port 8100
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI


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


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="benchmarks.bare_app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same server settings as `inpaint-api` (api/main.py): one process, no access log.
    uvicorn.run(
        "benchmarks.bare_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        proxy_headers=True,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
