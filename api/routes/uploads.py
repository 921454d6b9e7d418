"""Uploads (the Stable Diffusion API enterprise `upload_image`): store an input image once, get a
short-lived link to it, and submit the link as `image`/`mask` (`init_image`/`mask_image`).

The image is checked like any input (format, size, pixels from its header) when it is uploaded.
The link is ours (storage.blobs.uploads): a submit reads it from storage, never over the network,
and only for the key that uploaded it. Anyone holding the link may view the image until it expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.bodies import gated_json
from api.deps import BaseUrl, BearerSecret, ContextDep, HeaderSecret, bearer_secret, find_caller, get_body_key
from api.limits import take_token
from api.openapi import error_response, error_responses
from storage.blobs.images import decode_inline, inspect_image, is_url
from storage.blobs.links import is_valid
from storage.blobs.store import with_retries
from storage.blobs.uploads import new_token, owner_tag, upload_key, upload_link, upload_subject
from storage.database.jobs import utcnow
from storage.database.models import ApiKey
from storage.errors import InvalidInput, NotFound

router = APIRouter(tags=["uploads"])
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class UploadImageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(None, description="Your API key, when not sent as x-api-key.")
    image: str = Field(min_length=1, description="The image: base64 or a data URI (or, multipart, a file).")


class UploadAnswer(BaseModel):
    status: Literal["success"]
    link: str = Field(description="Submit it as image/mask (init_image/mask_image) with the same key.")
    expires_at: datetime
    expires_in: int = Field(description="Seconds the link stays valid: INPAINT_UPLOAD_TTL_SECONDS.")
    format: str
    width: int
    height: int


def upload_body_schema() -> dict[str, Any]:
    json_schema = UploadImageBody.model_json_schema()
    form_schema = {
        "type": "object",
        "required": ["image"],
        "properties": {"key": {"type": "string"}, "image": {"type": "string", "format": "binary"}},
    }
    content = {"application/json": {"schema": json_schema}, "multipart/form-data": {"schema": form_schema}}
    return {"requestBody": {"required": True, "content": content}, "security": [{"ApiKey": []}, {}]}


def get_uploader(
    context: ContextDep,
    body_key: Annotated[str | None, Depends(get_body_key)],
    header: HeaderSecret,
    bearer: BearerSecret,
) -> ApiKey:
    """Any key, from x-api-key, the body's `key` or a Bearer token; it takes a token from the key's rate bucket."""
    key = find_caller(context, header or body_key or bearer_secret(bearer))
    take_token(context, key)
    return key


def read_upload_body(request: Request) -> UploadImageBody:
    try:
        return UploadImageBody.model_validate(gated_json(request) or {})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


@router.post(
    "/api/v1/enterprise/upload_image",
    summary="Upload an input image; submit the returned link as image or mask",
    description="JSON (`image` in base64 or a data URI) or multipart/form-data (`image` a file). The image is "
    "checked like any input. The link expires after INPAINT_UPLOAD_TTL_SECONDS and is accepted only from "
    "the key that uploaded it. Any key: in the x-api-key header, as a Bearer token, or as `key` in the body.",
    openapi_extra=upload_body_schema(),
    response_model=UploadAnswer,
    responses={**error_responses(400, 401, 413, 429)},
)
def upload_image(
    request: Request, key: Annotated[ApiKey, Depends(get_uploader)], context: ContextDep, base_url: BaseUrl
) -> dict[str, Any]:
    body = read_upload_body(request)
    if is_url(body.image):
        raise InvalidInput("image", "must be the image itself (base64, a data URI or a file), not a URL")
    settings = context.settings
    data = decode_inline("image", body.image)
    if len(data) > settings.max_image_bytes:
        limit = settings.max_image_bytes
        raise InvalidInput(
            "image", f"is {len(data)} bytes, more than the limit of {limit}", limit=limit, value=len(data)
        )
    info = inspect_image("image", data, max_pixels=settings.max_image_pixels)
    owner, token = owner_tag(key.id, signing_key=settings.signing_key), new_token()
    stored = upload_key(owner, token)
    media_type = MEDIA_TYPES[info.format]
    with_retries(lambda: context.blobs.put(stored, data, media_type), budget=2.0, what="storing an upload")
    expires_at = utcnow().replace(microsecond=0) + timedelta(seconds=settings.upload_ttl_seconds)
    return {
        "status": "success",
        "link": upload_link(base_url, owner, token, expires_at=expires_at, signing_key=settings.signing_key),
        "expires_at": expires_at,
        "expires_in": settings.upload_ttl_seconds,
        "format": info.format,
        "width": info.width,
        "height": info.height,
    }


@router.get(
    "/uploads/{owner}/{token}",
    summary="An uploaded image through its signed link",
    include_in_schema=False,
    responses={404: error_response(404, "Invalid or expired link")},
)
def get_upload(
    owner: Annotated[str, Path(max_length=16)],
    token: Annotated[str, Path(max_length=64)],
    context: ContextDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> Response:
    key = context.settings.signing_key
    if not is_valid(upload_subject(owner, token), expires, signature, key=key, now=utcnow()):
        raise NotFound("this link is invalid or has expired")
    try:
        data = context.blobs.get(upload_key(owner, token))
    except NotFound:
        raise NotFound("this link is invalid or has expired") from None
    return Response(content=data, media_type=media_type_of(data), headers={"Cache-Control": "private, max-age=300"})


def media_type_of(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"
