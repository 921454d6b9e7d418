"""The body of a submit route, as sent: the model's family decides which request class validates it
(api.submit.parse_request), so the route itself takes the raw JSON value. A multipart form arrives
here as that same JSON value (api.edge.multipart)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from storage.contract.requests import REQUEST_CLASSES
from storage.errors import InvalidInput


def gated_json(request: Request) -> Any:
    """The body's JSON value as the input gate (api.edge.gate) parsed it; None for an empty body."""
    return request.scope.get("state", {}).get("json_body")


async def read_json_body(request: Request) -> Any:
    """The raw JSON body; the model's family decides which request class validates it."""
    value = gated_json(request)
    if value is None:
        raise InvalidInput("body", "is empty; send the job as a JSON object")
    return value


def submit_body_schema() -> dict[str, Any]:
    """OpenAPI: the body is one of the family request classes (GET /v2/models gives each model's family)."""
    schemas = []
    for cls in dict.fromkeys(REQUEST_CLASSES.values()):
        families = ", ".join(f for f, c in REQUEST_CLASSES.items() if c is cls)
        doc = " ".join((cls.__doc__ or "").split())
        schemas.append(cls.model_json_schema() | {"description": f"Model families: {families}. {doc}"})
    body = {"schema": {"oneOf": schemas}}
    form = {"schema": FORM_SCHEMA}
    return {"requestBody": {"required": True, "content": {"application/json": body, "multipart/form-data": form}}}


FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The JSON fields as form fields (numbers and booleans as text, as the JSON body takes them); "
    "`image` and `mask` may be files, each at most INPAINT_MAX_IMAGE_BYTES (413 naming the field past it).",
    "required": ["prompt", "image"],
    "properties": {
        "prompt": {"type": "string"},
        "image": {"type": "string", "format": "binary"},
        "mask": {"type": "string", "format": "binary"},
    },
    "additionalProperties": {"type": "string"},
}


JsonBody = Annotated[Any, Depends(read_json_body)]
