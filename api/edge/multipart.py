"""Multipart submits: `multipart/form-data` on the routes that take an image (`FORM_PATHS`), read as
it streams in and turned into the JSON value those routes take, so that everything behind the
input gate (validation, idempotency, image checks) sees one shape.

- `image` and `mask` may be files (parts with a filename); their bytes become base64 strings.
  No other field may be a file.
- Every other part is a text field, passed on as the string it is: the request classes coerce
  "30" to 30 and "true" (or "yes", "1") to true, as they do for the JSON bodies of ModelsLab
  clients, which send numbers as strings. A name sent more than once becomes a list.
- Limits, checked as the parts arrive: a file over `max_file_bytes` or a text field over
  `max_field_bytes` is `PartTooLarge` (a 413 naming the field) before the rest is read; at most
  `max_files` files and `max_fields` fields. The whole form is under the body limit
  (api.edge.body_limit), like any body. Files over 1 MB are spooled to a temporary file, not memory.
- A body that is not valid multipart is `MalformedBody` (a 400 saying what is wrong).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import Receive, Scope

from api.edge.json_body import MalformedBody, check_value

FORM_PATHS = re.compile(r"^/v[12]/(?!batch$)[^/]+$|^/api/v1/enterprise/(upload_image|nsfw_image_check)$")
"""POST /v2/{model}, /v1/{model} and the Stable Diffusion API enterprise upload_image and nsfw_image_check."""
FILE_FIELDS = ("image", "mask")


@dataclass(frozen=True)
class FormLimits:
    max_file_bytes: int
    """Per file: INPAINT_MAX_IMAGE_BYTES."""
    max_field_bytes: int
    """Per text field: room for an image sent as base64 text instead of a file."""
    max_files: int = len(FILE_FIELDS)
    max_fields: int = 64

    @classmethod
    def for_images(cls, max_image_bytes: int) -> FormLimits:
        return cls(max_file_bytes=max_image_bytes, max_field_bytes=4 * (max_image_bytes // 3 + 1) + 1024)


class PartTooLarge(Exception):
    """One part of the form is over its limit: `field` names it."""

    def __init__(self, field: str, limit: int, what: str) -> None:
        self.field = field
        self.limit = limit
        self.message = f"{field}: the {what} is more than the limit of {limit} bytes"
        super().__init__(self.message)


class ClientLeft(Exception):
    pass


def takes_form(scope: Scope, content_type: str | None) -> bool:
    """Whether this request is a multipart body to a route that takes one."""
    is_multipart = content_type is not None and content_type.lower().lstrip().startswith("multipart/form-data")
    return is_multipart and scope["method"] == "POST" and FORM_PATHS.match(scope["path"]) is not None


class LimitedParser(MultiPartParser):
    """Starlette's streaming parser, with a limit on each file and each text field that names the field."""

    def __init__(self, headers: Headers, receive: Receive, limits: FormLimits) -> None:
        super().__init__(
            headers,
            body_chunks(receive),
            max_files=limits.max_files,
            max_fields=limits.max_fields,
            max_part_size=limits.max_field_bytes + 1,  # ours below answers first, naming the field
        )
        self.limits = limits
        self._part_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._part_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._part_bytes += end - start
        name = self._current_part.field_name
        if self._current_part.file is not None and self._part_bytes > self.limits.max_file_bytes:
            raise PartTooLarge(name, self.limits.max_file_bytes, "file (INPAINT_MAX_IMAGE_BYTES)")
        if self._current_part.file is None and self._part_bytes > self.limits.max_field_bytes:
            raise PartTooLarge(name, self.limits.max_field_bytes, "field")
        super().on_part_data(data, start, end)


async def body_chunks(receive: Receive) -> Any:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientLeft
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def read_form(scope: Scope, receive: Receive, limits: FormLimits) -> dict[str, Any] | None:
    """The form as the JSON object the submit routes take; None if the client left (or the body
    limit answered 413) first. Raises PartTooLarge or MalformedBody."""
    try:
        form = await LimitedParser(Headers(scope=scope), receive, limits).parse()
    except ClientLeft:
        return None
    except MultiPartException as exc:
        raise MalformedBody("body", f"is not valid multipart/form-data: {exc.message}") from None
    try:
        return await run_in_threadpool(form_values, form)
    finally:
        await form.close()


def form_values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, item in form.multi_items():
        value = file_value(name, item) if isinstance(item, UploadFile) else item
        if name in values:
            previous = values[name]
            values[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            values[name] = value
    check_value(values)
    return values


def file_value(name: str, upload: UploadFile) -> str:
    if name not in FILE_FIELDS:
        raise MalformedBody(name, f"is a file; only {' and '.join(FILE_FIELDS)} may be sent as files")
    data = upload.file.read()
    if not data:
        raise MalformedBody(name, "is an empty file")
    return base64.b64encode(data).decode("ascii")
