"""The web front end: the built-in chat page, or the ``--path`` folder, and ``/completion.js``.

Routes (all under ``--api-prefix``, as upstream serves its UI)::

    GET /                  the built-in page (llamaserver/webui/index.html), or PATH/index.html
    GET /<asset>           built-in: only the files shipped in llamaserver/webui/
    GET /<path:filename>   --path: any file under PATH (nothing outside it)
    GET /completion.js     always; a completion.js inside PATH wins over the built-in one

``--no-ui`` (``webui=False``) registers none of them.  They are public: the page has to load
before it can ask for an API key.  The built-in assets get explicit routes rather than a
catch-all, so a GET on a POST-only API route still answers as the API would (401 without a
key, then 405); for ``--path`` the catch-all gives those answers itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from quart import Quart, Response, redirect, request, send_from_directory
from werkzeug.exceptions import MethodNotAllowed, NotFound

from .http import ApiError
from .settings import ServerSettings

__all__ = ["UI_DIR", "add_ui_routes"]

KeyCheck = Callable[[Mapping[str, str]], bool]

UI_DIR = Path(__file__).with_name("webui")

# Model output is shown by this page: even if a renderer bug let markup through, the browser
# must not run it or fetch from elsewhere.  Pages from --path are the user's own and may need
# inline scripts (the seed's example has one), so they get no policy.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_ui_routes(app: Quart, settings: ServerSettings, *,
                  key_is_valid: KeyCheck | None = None) -> None:
    """Register the front end's routes on ``app`` (nothing when ``settings.webui`` is off).

    ``key_is_valid`` (when the server has API keys) keeps the ``--path`` catch-all from
    telling a client without a key which API paths exist.
    """
    if not settings.webui:
        return
    prefix = settings.api_prefix
    if prefix:
        async def to_slash() -> Response:  # relative asset URLs need the trailing slash
            return redirect(prefix + "/", 308)  # type: ignore[return-value]

        app.add_url_rule(prefix, "webui_prefix", to_slash, methods=["GET"],
                         strict_slashes=False)
    if settings.path is None:
        _add_builtin(app, prefix)
    else:
        _add_folder(app, prefix, Path(settings.path).expanduser().resolve(), key_is_valid)


def _add_builtin(app: Quart, prefix: str) -> None:
    names = sorted(p.name for p in UI_DIR.iterdir() if p.is_file() and not p.name.startswith("."))

    def view(name: str, endpoint: str):  # one closure per file: no name taken from the URL
        async def serve() -> Response:
            response = await send_from_directory(UI_DIR, name)
            response.headers["Cache-Control"] = "no-cache"  # revalidated: ETag, 304
            if name.endswith(".html"):
                response.headers.update(_PAGE_HEADERS)
            return response

        serve.__name__ = endpoint
        return serve

    app.add_url_rule(prefix + "/", "webui_index", view("index.html", "webui_index"),
                     methods=["GET"])
    for i, name in enumerate(names):
        endpoint = f"webui_asset_{i}"
        app.add_url_rule(f"{prefix}/{name}", endpoint, view(name, endpoint), methods=["GET"])


def _add_folder(app: Quart, prefix: str, root: Path, key_is_valid: KeyCheck | None) -> None:
    async def index() -> Response:
        return await _send(root, "index.html")

    async def completion_js() -> Response:
        if (root / "completion.js").is_file():
            return await _send(root, "completion.js")
        return await _send(UI_DIR, "completion.js")

    async def static_file(filename: str) -> Response:
        try:
            return await _send(root, filename)  # safe_join refuses '..' and absolute paths
        except NotFound:
            _raise_if_api_path(app, key_is_valid)
            raise

    app.add_url_rule(prefix + "/", "webui_index", index, methods=["GET"])
    app.add_url_rule(prefix + "/completion.js", "webui_completion_js", completion_js,
                     methods=["GET"])
    app.add_url_rule(prefix + "/<path:filename>", "webui_static", static_file, methods=["GET"])


async def _send(root: Path, name: str) -> Response:
    response = await send_from_directory(root, name)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _raise_if_api_path(app: Quart, key_is_valid: KeyCheck | None) -> None:
    """A GET that fell to the catch-all on a path the API serves with other methods gets the
    API's answer, as it would without ``--path``: 401 without a valid key, else 405."""
    adapter = app.url_map.bind("", url_scheme=request.scheme)
    allowed = set(adapter.allowed_methods(request.path)) - {"GET", "HEAD", "OPTIONS"}
    if not allowed:
        return
    if key_is_valid is not None and not key_is_valid(request.headers):
        raise ApiError(401, "Invalid API Key", "authentication_error")
    raise MethodNotAllowed(valid_methods=sorted(allowed))
