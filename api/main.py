"""`inpaint-api`: serve the API with uvicorn and read deadlines (api/edge/server.py). Honours PORT, INPAINT_HOST."""

from __future__ import annotations

import argparse

from api.edge.server import Deadlines, ServerConfig, serve
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
    deadlines = Deadlines(header_seconds=settings.header_timeout_seconds, body_seconds=settings.body_timeout_seconds)
    config = ServerConfig(
        "api.app:create_app",
        deadlines=deadlines,
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        timeout_keep_alive=settings.keep_alive_seconds,
        proxy_headers=True,
        log_config=None,
        access_log=False,
    )
    serve(config)
