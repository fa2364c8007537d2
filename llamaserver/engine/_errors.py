"""Errors the engine reports; each knows the HTTP status and error type it stands for.

    EngineError            500 server_error (base)
    ├── InvalidRequest     400 invalid_request_error   the request can never succeed as sent
    ├── Overloaded         503 unavailable_error       the wait queue is full (.retry_after s)
    ├── NotReady           503 unavailable_error       the model is still loading (or failed)
    └── Unsupported        501 not_supported_error     the server was not started for this
"""

from __future__ import annotations

__all__ = ["EngineError", "InvalidRequest", "Overloaded", "NotReady", "Unsupported"]


class EngineError(Exception):
    status: int = 500
    type: str = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(EngineError):
    status = 400
    type = "invalid_request_error"


class Overloaded(EngineError):
    status = 503
    type = "unavailable_error"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(EngineError):
    status = 503
    type = "unavailable_error"

    def __init__(self, message: str = "Loading model") -> None:
        super().__init__(message)


class Unsupported(EngineError):
    status = 501
    type = "not_supported_error"
