"""How much one request may bring and take, and how the server stops.

llama-server has no flags for these (its HTTP library caps a body at 100 MB and nothing
else), so the flags are this server's own.
"""

from __future__ import annotations

from functools import partial

from ._fields import SERVER, Finite, Group, option

__all__ = ["LimitSettings"]

_opt = partial(option, group=SERVER)


class LimitSettings(Group):
    body_max_bytes: int = _opt(
        "--body-max-bytes", default=64 * 1024 * 1024, ge=1024, le=1 << 31, metavar="N")
    """Largest request body, in bytes; a larger one is answered 413."""
    chat_max_messages: int = _opt(
        "--chat-max-messages", default=4096, ge=1, le=10_000_000, metavar="N")
    """Most messages in one chat request; more is a 400 naming this flag."""
    chat_max_chars: int = _opt("--chat-max-chars", default=8_000_000, ge=1, le=1 << 31, metavar="N")
    """Most characters of text in one chat request's messages (media data not counted; the chat
    template's output is bounded at 8,000,000 characters too); more is a 400 naming this flag."""
    http_queue_size: int = _opt("--http-queue-size", default=64, ge=0, le=1_000_000, metavar="N")
    """Blocking tasks (parsing large bodies, rendering templates, tokenizing) that may wait for a
    --threads-http worker; beyond it a request is answered 503 with Retry-After."""
    shutdown_timeout: Finite = _opt(
        "--shutdown-timeout", default=5.0, ge=0, le=86_400, metavar="SECONDS")
    """On SIGTERM/SIGINT, seconds running requests may take to finish while new ones get 503; then
    streams end with a final event saying they were cut (stop_type / finish_reason "shutdown") and
    the rest get 503."""
