"""How much one request may bring and take, and how the server stops.

llama-server has no flags for these (its HTTP library caps a body at 100 MB and nothing
else), so the flags are this server's own.
"""

from __future__ import annotations

from pydantic import Field

from ._fields import SERVER, Finite, Group, cli

__all__ = ["LimitSettings"]


class LimitSettings(Group):
    body_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, le=1 << 31, description="Largest request body, in bytes; "
        "a larger one is answered 413.",
        json_schema_extra=cli("--body-max-bytes", group=SERVER, metavar="N"))
    chat_max_messages: int = Field(
        4096, ge=1, le=10_000_000, description="Most messages in one chat request; more is a "
        "400 naming this flag.",
        json_schema_extra=cli("--chat-max-messages", group=SERVER, metavar="N"))
    chat_max_chars: int = Field(
        8_000_000, ge=1, le=1 << 31, description="Most characters of text in one chat "
        "request's messages (media data not counted; the chat template's output is bounded "
        "at 8,000,000 characters too); more is a 400 naming this flag.",
        json_schema_extra=cli("--chat-max-chars", group=SERVER, metavar="N"))
    http_queue_size: int = Field(
        64, ge=0, le=1_000_000, description="Blocking tasks (parsing large bodies, rendering "
        "templates, tokenizing) that may wait for a --threads-http worker; beyond it a "
        "request is answered 503 with Retry-After.",
        json_schema_extra=cli("--http-queue-size", group=SERVER, metavar="N"))
    shutdown_timeout: Finite = Field(
        5.0, ge=0, le=86_400, description="On SIGTERM/SIGINT, seconds running requests may "
        "take to finish while new ones get 503; then streams end with a final event saying "
        "they were cut (stop_type / finish_reason \"shutdown\") and the rest get 503.",
        json_schema_extra=cli("--shutdown-timeout", group=SERVER, metavar="SECONDS"))
