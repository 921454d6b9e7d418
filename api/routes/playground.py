"""The playground: a page that drives this API from a browser, served at /playground.

The page and its scripts are static files under api/static/playground/ (no build
step). Loading them needs no key; every API call the page makes sends the key the
user typed in, which the page keeps in the browser's local storage.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from storage.errors import NotFound

router = APIRouter(tags=["playground"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "playground"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
ASSET_NAME = re.compile(r"^[a-z][a-z0-9-]*\.(js|css)$")
# Scripts, styles and API calls come from this origin only. Images may also come from
# data:/blob: (painted masks, downloads) and from any http(s) URL the user loads.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob: http: https:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def serve_static(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise NotFound(f"no playground file {name!r}")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[path.suffix],
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/playground", summary="The playground page")
def get_page() -> FileResponse:
    return serve_static("index.html")


@router.get("/playground/{name}", summary="A script or style sheet of the playground")
def get_asset(name: str) -> FileResponse:
    if not ASSET_NAME.match(name):
        raise NotFound(f"no playground file {name!r}")
    return serve_static(name)
