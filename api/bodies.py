"""The body of a submit route, as sent: the model's family decides which request class validates it
(api.submit.parse_request), so the route itself takes the raw JSON value."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from storage.contract.requests import REQUEST_CLASSES


async def read_json_body(request: Request) -> Any:
    """The raw JSON body; the model's family decides which request class validates it."""
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        detail = getattr(exc, "msg", "parse error")
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "JSON decode error",
                    "input": None,
                    "ctx": {"error": detail},
                }
            ]
        ) from None


def submit_body_schema() -> dict[str, Any]:
    """OpenAPI: the body is one of the family request classes (GET /v2/models gives each model's family)."""
    schemas = []
    for cls in dict.fromkeys(REQUEST_CLASSES.values()):
        families = ", ".join(f for f, c in REQUEST_CLASSES.items() if c is cls)
        doc = " ".join((cls.__doc__ or "").split())
        schemas.append(cls.model_json_schema() | {"description": f"Model families: {families}. {doc}"})
    body = {"schema": {"oneOf": schemas}}
    return {"requestBody": {"required": True, "content": {"application/json": body}}}


JsonBody = Annotated[Any, Depends(read_json_body)]
