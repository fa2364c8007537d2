"""API keys: ``Authorization: Bearer KEY`` or ``X-Api-Key: KEY`` on every non-public route."""

from __future__ import annotations

from quart import Blueprint, request

from ._context import ApiContext
from ._errors import ApiError

# Health and model listing stay reachable for load balancers and clients probing the server.
PUBLIC_ENDPOINTS = frozenset({"health", "v1_health", "models", "v1_models"})


def add_auth(bp: Blueprint, ctx: ApiContext) -> None:
    if not ctx.auth_enabled:
        return

    @bp.before_request
    async def require_api_key() -> None:
        if request.method == "OPTIONS":  # CORS preflight carries no credentials
            return
        endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
        if endpoint in PUBLIC_ENDPOINTS:
            return
        if not ctx.key_is_valid(request.headers):
            raise ApiError(401, "Invalid API Key", "authentication_error")
