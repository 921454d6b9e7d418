"""Dependency aliases, so that handlers read like prose: `session: SessionDep, key: CurrentKey`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.bodies import gated_json
from api.context import AppContext
from storage.database.engine import session_scope
from storage.database.keys import find_key
from storage.database.models import ApiKey
from storage.errors import Forbidden, Unauthorized


# Dependencies that never block are `async def`: FastAPI runs a plain `def` one on the request
# thread pool, a thread hop each, for what is a dictionary lookup here.
async def get_context(request: Request) -> AppContext:
    return request.app.state.context  # type: ignore[no-any-return]


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    """A session for the whole request. Rule: a request holds one pooled connection at a
    time, so a handler that takes this must not open another scope while it is in use;
    the key lookup below uses its own, closed before the handler runs."""
    with session_scope(context.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


API_KEY_HEADER = APIKeyHeader(name="x-api-key", scheme_name="ApiKey", description="Your API key.", auto_error=False)
BEARER = HTTPBearer(
    scheme_name="Bearer", description="Your API key as `Authorization: Bearer <key>`.", auto_error=False
)
# auto_error=False: a missing key is this API's own 401 (find_caller), not FastAPI's.
HeaderSecret = Annotated[str | None, Security(API_KEY_HEADER)]
BearerSecret = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def bearer_secret(bearer: HTTPAuthorizationCredentials | None) -> str | None:
    return bearer.credentials if bearer else None


def find_caller(context: AppContext, secret: str | None) -> ApiKey:
    """The key whose secret this is. 401 if missing or unknown."""
    if not secret:
        raise Unauthorized("missing API key: send it in the x-api-key header")
    with session_scope(context.sessions) as session:  # not SessionDep: it would be held to the end of the request
        key = find_key(session, secret)
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    return key


def get_current_key(context: ContextDep, header: HeaderSecret, bearer: BearerSecret) -> ApiKey:
    """The caller's key, from `x-api-key` (or `Authorization: Bearer`). 401 if missing or unknown."""
    return find_caller(context, header or bearer_secret(bearer))


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


async def get_body_key(request: Request) -> str | None:
    """`key` from a JSON object body: the Stable Diffusion API enterprise sends the key there."""
    body = gated_json(request)
    key = body.get("key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


def require_admin(key: ApiKey) -> ApiKey:
    """The key if it is an admin key; 403 otherwise."""
    if not key.is_admin:
        raise Forbidden("this route needs an admin key")
    return key


def get_admin_key(
    context: ContextDep,
    body_key: Annotated[str | None, Depends(get_body_key)],
    header: HeaderSecret,
    bearer: BearerSecret,
) -> ApiKey:
    """An admin key from `x-api-key`, the body's `key` or `Authorization: Bearer`, in that order.
    401 if missing or unknown, 403 if not admin."""
    return require_admin(find_caller(context, header or body_key or bearer_secret(bearer)))


AdminKey = Annotated[ApiKey, Depends(get_admin_key)]


async def get_base_url(request: Request, context: ContextDep) -> str:
    """Base of absolute URLs: INPAINT_PUBLIC_URL, else the URL this request came in on."""
    return (context.settings.public_url or str(request.base_url)).rstrip("/")


BaseUrl = Annotated[str, Depends(get_base_url)]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="The same key and body within 24 h return the original request_id; another body gets 409.",
    ),
]

ModelSlug = Annotated[str, Path(description="A model slug; GET /v2/models lists them.", examples=["erase"])]
