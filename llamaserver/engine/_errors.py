"""Errors the engine reports.  Each carries a kind; the HTTP layer maps kinds to answers.

    EngineError                   INTERNAL      (base)
    ├── InvalidRequest            INVALID       the request can never succeed as sent
    │   └── PromptTooLong         TOO_LONG      the prompt does not fit a slot (.n_prompt_tokens,
    │                                           .n_ctx); raised only for requests that do not
    │                                           ask for the seed's truncation
    ├── Overloaded                OVERLOADED    the wait queue is full (.retry_after seconds)
    ├── NotReady                  UNAVAILABLE   loading, failed, or shutting down
    └── Unsupported               UNSUPPORTED   the engine was not started for this
"""

from __future__ import annotations

import enum

__all__ = ["ErrorKind", "EngineError", "InvalidRequest", "PromptTooLong", "Overloaded",
           "NotReady", "Unsupported"]


class ErrorKind(enum.Enum):
    INTERNAL = "internal"
    INVALID = "invalid"
    TOO_LONG = "too_long"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    UNSUPPORTED = "unsupported"


class EngineError(Exception):
    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(EngineError):
    kind = ErrorKind.INVALID


class PromptTooLong(InvalidRequest):
    kind = ErrorKind.TOO_LONG

    def __init__(self, message: str, *, n_prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(message)
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx


class Overloaded(EngineError):
    kind = ErrorKind.OVERLOADED

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(EngineError):
    kind = ErrorKind.UNAVAILABLE

    def __init__(self, message: str = "Loading model") -> None:
        super().__init__(message)


class Unsupported(EngineError):
    kind = ErrorKind.UNSUPPORTED
