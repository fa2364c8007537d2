"""GET /openapi.json and GET /docs: the API's own description (behind the API key, as every
route but /health).

The document is built from the app's url_map on first use and kept for the blueprint's life
(routes cannot be added once an app serves); it is the same for every request but for the
ASGI root path a host mounts the app under.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from quart import Blueprint, Response, current_app, request

from ._context import ApiContext, dumps
from ._openapi import build_document
from ._openapi_html import render_html


def _version() -> str:
    try:
        return metadata.version("llama-ffi")
    except metadata.PackageNotFoundError:
        return "0"


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    built: dict[str, tuple[dict[str, Any], str]] = {}  # root path -> (document, its JSON)

    def document() -> tuple[dict[str, Any], str]:
        root = request.root_path or ""
        if root not in built:
            doc = build_document(
                current_app.url_map.iter_rules(), blueprint=bp.name,
                auth=ctx.auth_enabled, title="llamaserver", version=_version(),
                description="llama.cpp's HTTP API and OpenAI's, served by llama-ffi on "
                            f"libllama ({ctx.build_info}).", root_path=root)
            built[root] = (doc, dumps(doc))
        return built[root]

    @bp.get("/openapi.json")
    async def openapi() -> Response:
        return Response(document()[1], content_type="application/json")

    @bp.get("/docs")
    async def docs() -> Response:
        return Response(render_html(document()[0]), content_type="text/html; charset=utf-8")
