"""A JSON answer sent straight from a pure ASGI layer, instead of the app's, in the route's dialect."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Scope, Send

MODELSLAB_PREFIXES = (
    "/api/v6/",
    "/api/v1/enterprise/inpaint",
    "/api/v1/enterprise/image_editing/",
    "/api/v1/enterprise/images/inpaint",  # modelslab-py's community API, enterprise mode
    "/api/v1/enterprise/images/fetch",
)
MODELSLAB_FETCH = "/api/v1/enterprise/fetch"
# One wording for a database that refuses and one that does not answer: clients match on it.
DATABASE_UNAVAILABLE = "the database is unavailable right now; nothing was stored, try again"


def speaks_modelslab(path: str) -> bool:
    return path.startswith(MODELSLAB_PREFIXES) or path.startswith(MODELSLAB_FETCH)


def error_content(scope: Scope, message: str, **extra: Any) -> dict[str, Any]:
    """`{"error", ...}`; on the ModelsLab routes also their `{"status": "error", "message"}`."""
    content = {"error": message, **extra}
    if speaks_modelslab(scope["path"]):
        content = {"status": "error", "message": message, **content}
    return content


async def send_json(send: Send, status: int, content: dict[str, Any], *, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(content).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
