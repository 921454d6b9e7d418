"""`inpaint-api`: serve the API with uvicorn. Honours PORT and INPAINT_HOST."""

from __future__ import annotations

import argparse

import uvicorn

from storage.logs import configure_logging
from storage.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inpaint-api", description=__doc__)
    parser.add_argument("--host", help="default: INPAINT_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, help="default: PORT or 8000")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        proxy_headers=True,
        log_config=None,
        access_log=False,
    )
