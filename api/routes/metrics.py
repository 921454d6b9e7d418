"""GET /metrics: Prometheus text format, for an admin key or the INPAINT_METRICS_TOKEN bearer.

Scrapers usually hold no API key, so a dedicated token (`Authorization: Bearer
<INPAINT_METRICS_TOKEN>`) also opens it; it opens nothing else. The figures are
service-wide: no label names a key, so a metrics reader learns nothing per key.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import BearerSecret, ContextDep, HeaderSecret, bearer_secret, find_caller, require_admin
from api.openapi import error_responses

router = APIRouter(tags=["operations"])


def allow_metrics_reader(context: ContextDep, header: HeaderSecret, bearer: BearerSecret) -> None:
    """The metrics token as a bearer, else an admin key (401 without a key, 403 for a non-admin key)."""
    token = context.settings.metrics_token.get_secret_value() if context.settings.metrics_token else ""
    secret = bearer_secret(bearer)
    if token and secret and hmac.compare_digest(secret.encode(), token.encode()):
        return
    require_admin(find_caller(context, header or secret))


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin key or metrics token)",
    dependencies=[Depends(allow_metrics_reader)],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Prometheus text"},
        **error_responses(403),
    },
)
def metrics(context: ContextDep) -> Response:
    return Response(generate_latest(context.metrics), media_type=CONTENT_TYPE_LATEST)
