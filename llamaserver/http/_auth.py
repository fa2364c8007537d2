"""API keys: ``Authorization: Bearer KEY`` or ``X-Api-Key: KEY`` on every non-public route.

As in llama-server, only the health check is public: model listings name the model's file,
slots hold other users' prompts, and answering 404 to an unknown route without a key would
let anyone map the API.
"""

from __future__ import annotations

from quart import Blueprint, Quart, request

from ._context import ApiContext
from ._errors import ApiError

PUBLIC_ENDPOINTS = frozenset({"health", "v1_health"})
# Query flags that turn a public answer into one that shows slot contents.
_PRIVATE_ARGS = ("include_slots",)


def _unauthorized() -> ApiError:
    return ApiError(401, "Invalid API Key", "authentication_error")


def add_auth(bp: Blueprint, ctx: ApiContext) -> None:
    if not ctx.auth_enabled:
        return

    @bp.before_request
    async def require_api_key() -> None:
        if request.method == "OPTIONS":  # CORS preflight carries no credentials
            return
        endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
        if endpoint in PUBLIC_ENDPOINTS and not any(a in request.args for a in _PRIVATE_ARGS):
            return
        if not ctx.key_is_valid(request.headers):
            raise _unauthorized()


def add_app_auth(app: Quart, ctx: ApiContext) -> None:
    """The same rule for requests no route matched (the app's own 404s)."""
    if not ctx.auth_enabled:
        return

    @app.before_request
    async def require_api_key_for_unknown_routes() -> None:
        if request.method == "OPTIONS" or request.url_rule is not None:
            return  # matched routes are checked by their blueprint
        if not ctx.key_is_valid(request.headers):
            raise _unauthorized()
