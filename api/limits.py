"""What a key may submit: the model (403) and how often (429). Credits (406) are taken in api.submit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.context import AppContext
from api.deps import BearerSecret, ContextDep, HeaderSecret, ModelSlug, bearer_secret, find_caller
from api.ratelimit import rate_of
from storage.database.keys import may_use_model
from storage.database.models import ApiKey
from storage.errors import Forbidden, RateLimited


def get_submit_key(model: ModelSlug, context: ContextDep, header: HeaderSecret, bearer: BearerSecret) -> ApiKey:
    """The caller's key (as get_current_key finds it), once it may use `model` and its bucket gave it a token.

    Runs before the body's fields are validated or any image is fetched, so a
    refused key costs the service next to nothing; and on one request thread, not two.
    """
    key = find_caller(context, header or bearer_secret(bearer))
    admit(context, key, model)
    return key


def admit(context: AppContext, key: ApiKey, model: str) -> None:
    """Forbidden (403) unless the key may use `model`; RateLimited (429) unless its bucket has a token."""
    if not may_use_model(key, model):
        allowed = ", ".join(key.allowed_models or []) or "none"
        raise Forbidden(f"this key may not use model {model!r}; it may use: {allowed}")
    take_token(context, key)


def take_token(context: AppContext, key: ApiKey) -> None:
    """RateLimited (429) unless the key's bucket has a token (submits and uploads share it)."""
    rate = rate_of(key, context.settings)
    if rate is not None:
        wait = context.rate_limiter.take(key.id, rate)
        if wait > 0:
            raise RateLimited(
                f"rate limit: this key may submit {rate.per_minute} jobs a minute, "
                f"{rate.burst} at once; retry in {wait:.1f} s",
                retry_after=wait,
            )


SubmitKey = Annotated[ApiKey, Depends(get_submit_key)]
