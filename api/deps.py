"""Dependency aliases, so that handlers read like prose: `session: SessionDep, key: CurrentKey`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from api.bodies import gated_json
from api.context import AppContext
from storage.database.engine import session_scope
from storage.database.keys import find_key
from storage.database.models import ApiKey
from storage.errors import Forbidden, Unauthorized


def get_context(request: Request) -> AppContext:
    return request.app.state.context  # type: ignore[no-any-return]


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    """A session for the whole request. Rule: a request holds one pooled connection at a
    time, so a handler that takes this must not open another scope while it is in use;
    the key lookup below uses its own, closed before the handler runs."""
    with session_scope(context.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_current_key(
    context: ContextDep,
    x_api_key: Annotated[str | None, Header(description="Your API key.")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ApiKey:
    """The caller's key, from `x-api-key` (or `Authorization: Bearer`). 401 if missing or unknown."""
    secret = x_api_key
    if secret is None and authorization and authorization.lower().startswith("bearer "):
        secret = authorization[7:].strip()
    if not secret:
        raise Unauthorized("missing API key: send it in the x-api-key header")
    with session_scope(context.sessions) as session:  # not SessionDep: it would be held to the end of the request
        key = find_key(session, secret)
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    return key


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


def get_body_key(request: Request) -> str | None:
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
    x_api_key: Annotated[str | None, Header(description="An admin API key (or `key` in the body).")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ApiKey:
    """An admin key from the header, or from the body's `key`. 401 if missing or unknown, 403 if not admin."""
    return require_admin(get_current_key(context, x_api_key or body_key, authorization))


AdminKey = Annotated[ApiKey, Depends(get_admin_key)]


def get_base_url(request: Request, context: ContextDep) -> str:
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
