"""The FastAPI application. `create_app(settings)` builds it; nothing happens at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.context import AppContext
from api.edge.admission import Admission
from api.edge.body_limit import BodyLimitMiddleware
from api.edge.database_guard import GuardMiddleware
from api.edge.gate import InputGate
from api.edge.multipart import FormLimits
from api.errors import install_error_handlers
from api.openapi import install_openapi
from api.routes import (
    batch,
    catalog,
    checks,
    enterprise,
    files,
    health,
    metrics,
    modelslab,
    playground,
    requests,
    uploads,
    v1,
    v2,
    webhooks,
)
from storage.database.engine import write_scope
from storage.database.jobs import utcnow
from storage.database.keys import ensure_key
from storage.settings import Settings, load_settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Asynchronous inpainting. Submit an image, a mask and a prompt to `POST /v2/{model}`
and get a `request_id` at once; poll `status_url`, then fetch `response_url`.
Masks: white (255) repaints, black (0) keeps. Every route but `/healthz`,
`/readyz` and signed image links needs an API key, in the `x-api-key` header or as
`Authorization: Bearer <key>` (the Stable Diffusion API routes also take it as `key`
in the JSON body). Errors are `{"error": ...}`; invalid input is a 400 whose `errors`
names each field, its limit and the given value.
"""


def bootstrap_key(context: AppContext) -> None:
    """Create INPAINT_BOOTSTRAP_API_KEY as an admin key if it does not exist yet."""
    secret = context.settings.bootstrap_api_key
    if secret is None:
        return
    hook_secret = context.settings.bootstrap_webhook_secret
    with write_scope(context.sessions) as session:
        if ensure_key(
            session,
            key=secret.get_secret_value(),
            name="bootstrap",
            is_admin=True,
            now=utcnow(),
            webhook_secret=hook_secret.get_secret_value() if hook_secret else None,
        ):
            log.info("created the bootstrap API key from INPAINT_BOOTSTRAP_API_KEY")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    context = AppContext.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        bootstrap_key(context)
        context.guard.start()
        yield
        await context.watcher.close()
        context.close()

    app = FastAPI(title="Inpaint Queue", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.context = context
    install_error_handlers(app)
    install_middleware(app, context)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(catalog.router)
    app.include_router(batch.router)  # before v2: POST /v2/batch is not a model
    app.include_router(requests.router)
    app.include_router(v2.router)
    app.include_router(webhooks.router)
    app.include_router(v1.router)
    app.include_router(modelslab.router)
    app.include_router(enterprise.router)
    app.include_router(files.router)
    app.include_router(uploads.router)
    app.include_router(checks.router)
    app.include_router(playground.router)
    install_openapi(app)
    return app


def install_middleware(app: FastAPI, context: AppContext) -> None:
    """From the outside in: admission (429 before anything is read), the database guard (503 while
    the database does not answer), the body limit (413 before the body is read), the input gate (400
    for what no route can use), CORS for origins configured by name."""
    settings = context.settings
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            max_age=600,
            allow_headers=["x-api-key", "authorization", "content-type"],
        )
    app.add_middleware(InputGate, forms=FormLimits.for_images(settings.max_image_bytes))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(GuardMiddleware, guard=context.guard)
    app.add_middleware(Admission, requests=context.requests, streams=context.streams)
