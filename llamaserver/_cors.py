"""CORS for the standalone app, as llama-server does it, and safe for browsers.

- ``--cors-origins *`` (the default) with ``--cors-credentials`` (the default): the caller's
  ``Origin`` is echoed and credentials are allowed, as llama-server does; without
  credentials the answer is ``*``.
- a list of origins: a listed ``Origin`` is echoed (browsers accept one origin per answer,
  not a list), and only a listed one may send credentials; others get no CORS headers.
- ``localhost``: any origin whose host is localhost, 127.0.0.1 or ::1 (any port).
- A preflight (``OPTIONS`` on any path) is answered here, before API keys are checked
  (browsers send none with it), with ``--cors-methods`` and ``--cors-headers``.  Because
  browsers do not take ``*`` as "any header" for a request with credentials, ``*`` answers
  with the headers the browser asked for.

A host app that mounts the server's blueprint does its own CORS; this is for ``.app``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from quart import Quart, Response, request

__all__ = ["CorsPolicy", "install_cors"]

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class CorsPolicy:
    def __init__(self, origins: Sequence[str], methods: str, headers: str,
                 credentials: bool) -> None:
        self.any_origin = "*" in origins
        self.localhost = "localhost" in origins
        self.origins = frozenset(o for o in origins if o not in ("*", "localhost"))
        self.methods = methods
        self.headers = headers
        self.credentials = credentials

    def allows(self, origin: str) -> bool:
        if self.any_origin:
            return True
        normal = origin.rstrip("/").lower()
        if normal in self.origins:
            return True
        if self.localhost:
            host = urllib.parse.urlsplit(normal).hostname or ""
            return host in _LOCAL_HOSTS
        return False

    def headers_for(self, origin: str | None, *, preflight: bool = False,
                    requested_headers: str | None = None) -> dict[str, str]:
        """The CORS headers of an answer to a request from ``origin`` (None: no Origin)."""
        out: dict[str, str] = {}
        if origin is None or not self.allows(origin):
            if self.any_origin and origin is None:
                out["Access-Control-Allow-Origin"] = "*"
            if not self.any_origin or self.credentials:
                out["Vary"] = "Origin"
            return out
        if self.any_origin and not self.credentials:
            out["Access-Control-Allow-Origin"] = "*"
        else:
            out["Access-Control-Allow-Origin"] = origin
            out["Vary"] = "Origin"
            if self.credentials:
                out["Access-Control-Allow-Credentials"] = "true"
        if preflight:
            out["Access-Control-Allow-Methods"] = self.methods
            allowed = self.headers
            if allowed.strip() == "*" and requested_headers:
                allowed = requested_headers
            out["Access-Control-Allow-Headers"] = allowed
        return out


def install_cors(app: Quart, policy: CorsPolicy) -> None:
    """Answer preflights on every path and add CORS headers to every answer of ``app``."""

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS":
            return None
        response = Response("", status=200)
        response.headers.update(policy.headers_for(
            request.headers.get("Origin"), preflight=True,
            requested_headers=request.headers.get("Access-Control-Request-Headers")))
        return response

    @app.after_request
    async def cors(response: Response) -> Response:
        if request.method == "OPTIONS":
            return response  # the preflight answer above carries its headers
        for name, value in policy.headers_for(request.headers.get("Origin")).items():
            if name == "Vary":
                response.vary.add("Origin")
            else:
                response.headers[name] = value
        return response
