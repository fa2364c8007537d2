"""GET /openapi.json and GET /docs: the API's own description (behind the API key, as every
route but /health).

The document is built from the app's url_map on first use, in the worker pool (it takes tens
of milliseconds, too long for the event loop), and kept for the blueprint's life: routes
cannot be added once an app serves.  It is the same for every request but for the ASGI root
path a host mounts the app under.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from quart import Blueprint, Response, current_app, request

from ._context import ApiContext, dumps
from ._openapi import build_document
from ._openapi_html import render_html


@dataclass(frozen=True)
class _Built:
    json: str
    html: str


def _version() -> str:
    try:
        return metadata.version("llama-ffi")
    except metadata.PackageNotFoundError:
        return "0"


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    built: dict[str, _Built] = {}  # by root path

    async def document() -> _Built:
        root = request.root_path or ""
        if root not in built:
            rules = list(current_app.url_map.iter_rules())

            def build() -> _Built:
                doc = build_document(
                    rules, blueprint=bp.name, auth=ctx.auth_enabled, title="llamaserver",
                    version=_version(), root_path=root,
                    description="llama.cpp's HTTP API and OpenAI's, served by llama-ffi on "
                                f"libllama ({ctx.build_info}).")
                return _Built(dumps(doc), render_html(doc))

            built[root] = await ctx.run_blocking(build)
        return built[root]

    @bp.get("/openapi.json")
    async def openapi() -> Response:
        return Response((await document()).json, content_type="application/json")

    @bp.get("/docs")
    async def docs() -> Response:
        return Response((await document()).html, content_type="text/html; charset=utf-8")
