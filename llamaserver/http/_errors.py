"""The one place where failures become HTTP answers.

Every error leaves the server as ``{"error": {"code", "message", "type"}}`` (llama.cpp's and
OpenAI's shape)::

    ApiError (this module)         raised by the HTTP layer itself, carries status and type
    engine.EngineError             by its kind, in _ENGINE_KINDS below (InvalidRequest 400,
                                   PromptTooLong 400 exceed_context_size_error, Overloaded 503
                                   + Retry-After, NotReady 503, Unsupported 501, else 500)
    llama_ffi.InvalidTokenError    400  (bad token ids reach the library as a request's fault)
    llama_ffi.GrammarError         400
    llama_ffi.TemplateError        400
    werkzeug HTTPException         its own status (404, 405, 413, ...)
    anything else                  500 server_error, logged with its traceback
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from quart import Blueprint, Quart, Response, has_request_context, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from llama_ffi import GrammarError, InvalidTokenError, TemplateError

from ..engine import EngineError, ErrorKind, Overloaded, PromptTooLong

_log = logging.getLogger("llamaserver.http")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


# The one table from the engine's error kinds to answers: (status, error type).
_ENGINE_KINDS = {
    ErrorKind.INVALID: (400, "invalid_request_error"),
    ErrorKind.TOO_LONG: (400, "exceed_context_size_error"),
    ErrorKind.OVERLOADED: (503, "unavailable_error"),
    ErrorKind.UNAVAILABLE: (503, "unavailable_error"),
    ErrorKind.UNSUPPORTED: (501, "not_supported_error"),
    ErrorKind.INTERNAL: (500, "server_error"),
}


class ApiError(Exception):
    """An error answer: HTTP status, message, error type (and Retry-After for 503).

    ``extra`` fields go into the error object beside code, message and type; ``close`` ends
    the connection after the answer (the body may be unread, or the server is going away).
    """

    def __init__(self, status: int, message: str, type: str | None = None, *,
                 retry_after: float | None = None, extra: dict[str, Any] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status, "server_error" if status >= 500
                                       else "invalid_request_error")
        self.retry_after = retry_after
        self.extra = extra or {}
        self.close = close

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.status, "message": self.message, "type": self.type,
                          **self.extra}}


def invalid(message: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error")


def not_supported(message: str) -> ApiError:
    return ApiError(501, message, "not_supported_error")


def to_api_error(exc: BaseException) -> ApiError:
    """Classify by exception type (never by message text)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, EngineError):
        status, kind = _ENGINE_KINDS[exc.kind]
        retry = exc.retry_after if isinstance(exc, Overloaded) else (
            1.0 if status == 503 else None)
        extra = ({"n_prompt_tokens": exc.n_prompt_tokens, "n_ctx": exc.n_ctx}
                 if isinstance(exc, PromptTooLong) else None)
        return ApiError(status, exc.message or exc.__class__.__name__, kind,
                        retry_after=retry, extra=extra)
    if isinstance(exc, (InvalidTokenError, GrammarError, TemplateError)):
        return ApiError(400, str(exc), "invalid_request_error")
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 404:
            message = "File Not Found"
        return ApiError(status, message)
    _log.error("unhandled error while serving a request", exc_info=exc)
    return ApiError(500, "Internal server error", "server_error")


def error_response(exc: BaseException) -> Response:
    err = to_api_error(exc)
    response = Response(json.dumps(err.body(), ensure_ascii=False), status=err.status,
                        content_type="application/json")
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # RFC 9110: a 405 says
    return response


# Statuses given before a view has read the request's body (a missing API key, an unknown
# route, a body too large or too slow): the connection cannot carry another request.
_BODY_LEFT_UNREAD = frozenset({401, 404, 405, 408, 413})


def _has_body(req: Any) -> bool:
    return bool(req.content_length) or "chunked" in req.headers.get("Transfer-Encoding", "").lower()


async def _handle(exc: Exception) -> Response:
    response = error_response(exc)
    if isinstance(exc, ApiError) and exc.close:  # a shutdown cut, a body that could not be read
        response.headers["Connection"] = "close"
        return response
    if not (has_request_context() and _has_body(request)):
        return response
    if response.status_code in _BODY_LEFT_UNREAD:
        # Say so: a client that reused the connection would find it closed under its next request.
        response.headers["Connection"] = "close"
        return response
    # A view may refuse a request before it reads the body (a bad slot id in the path, a
    # feature this server lacks): read the rest (bounded by the body limit and timeout), or
    # the connection could not carry the client's next request.
    try:
        await request.get_data(as_text=False)
    except Exception:  # too large, timed out, the client left: the connection is done
        response.headers["Connection"] = "close"
    return response


def register_error_handlers(target: Quart | Blueprint) -> None:
    """Answer every error raised by ``target``'s views in the JSON error shape."""
    target.register_error_handler(Exception, _handle)

