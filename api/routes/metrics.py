"""GET /metrics: Prometheus text format, for an admin key or the INPAINT_METRICS_TOKEN bearer.

Scrapers usually hold no API key, so a dedicated token (`Authorization: Bearer
<INPAINT_METRICS_TOKEN>`) also opens it; it opens nothing else. The figures are
service-wide: no label names a key, so a metrics reader learns nothing per key.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ContextDep, get_current_key, require_admin

router = APIRouter(tags=["operations"])


def allow_metrics_reader(
    context: ContextDep,
    x_api_key: Annotated[str | None, Header(description="An admin API key.")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """The metrics token as a bearer, else an admin key (401 without a key, 403 for a non-admin key)."""
    token = context.settings.metrics_token.get_secret_value() if context.settings.metrics_token else ""
    if token and authorization and authorization.lower().startswith("bearer "):
        if hmac.compare_digest(authorization[7:].strip().encode(), token.encode()):
            return
    require_admin(get_current_key(context, x_api_key, authorization))


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin key or metrics token)",
    dependencies=[Depends(allow_metrics_reader)],
    response_class=Response,
)
def metrics(context: ContextDep) -> Response:
    return Response(generate_latest(context.metrics), media_type=CONTENT_TYPE_LATEST)
