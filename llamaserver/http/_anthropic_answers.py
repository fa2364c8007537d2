"""Typed models of Anthropic's Messages answers (``_anthropic``), for the OpenAPI document.

As in ``_llama_answers``: the view builds dicts, these models describe them, and
``tests/server/test_openapi.py`` holds real answers, whole and streamed, to them.  The names
are the document's (``components/schemas``), so they are unique across the dialects.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, RootModel

from ._llama_answers import Answer, ErrorDetail

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


# ---- content blocks -------------------------------------------------------------------------
class ThinkingBlock(Answer):
    type: Literal["thinking"]
    thinking: str = Field(description="empty in content_block_start")
    signature: str = Field(description="always empty: nothing signs a local model's thinking")


class TextBlock(Answer):
    type: Literal["text"]
    text: str = Field(description="empty in content_block_start")


class ToolUseBlock(Answer):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(description="the call's arguments; {} in "
                                              "content_block_start (they follow as "
                                              "input_json_delta)")


ContentBlock = Annotated[ThinkingBlock | TextBlock | ToolUseBlock, Field(discriminator="type")]


# ---- the message ----------------------------------------------------------------------------
class MessageStartUsage(Answer):
    input_tokens: int = Field(description="the prompt's tokens, cached ones included "
                                          "(message_delta's usage splits them)")
    output_tokens: int


class MessageUsage(MessageStartUsage):
    input_tokens: int = Field(description="the prompt's tokens not read from the cache")
    cache_read_input_tokens: int


class _MessageHead(Answer):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str


class MessageAnswer(_MessageHead):
    """POST /v1/messages: thinking first, then text, then the tool calls."""

    content: list[ContentBlock]
    stop_reason: StopReason
    stop_sequence: str | None = Field(description="the stop sequence met, with "
                                                  "stop_reason stop_sequence")
    usage: MessageUsage


class MessageTokenCount(Answer):
    input_tokens: int


# ---- streamed events (each SSE event is named by its data's type) --------------------------
class StartedMessage(_MessageHead):
    content: list[ContentBlock] = Field(max_length=0)
    stop_reason: None
    stop_sequence: None
    usage: MessageStartUsage


class MessageStartEvent(Answer):
    type: Literal["message_start"]
    message: StartedMessage


class ContentBlockStartEvent(Answer):
    type: Literal["content_block_start"]
    index: int
    content_block: ContentBlock


class ThinkingDelta(Answer):
    type: Literal["thinking_delta"]
    thinking: str


class SignatureDelta(Answer):
    """Sent (empty) just before a thinking block stops."""

    type: Literal["signature_delta"]
    signature: str


class TextDelta(Answer):
    type: Literal["text_delta"]
    text: str


class InputJsonDelta(Answer):
    type: Literal["input_json_delta"]
    partial_json: str = Field(description="a piece of the call's arguments as JSON text")


class ContentBlockDeltaEvent(Answer):
    type: Literal["content_block_delta"]
    index: int
    delta: Annotated[ThinkingDelta | SignatureDelta | TextDelta | InputJsonDelta,
                     Field(discriminator="type")]


class ContentBlockStopEvent(Answer):
    type: Literal["content_block_stop"]
    index: int


class StopDelta(Answer):
    stop_reason: StopReason
    stop_sequence: str | None


class MessageDeltaEvent(Answer):
    type: Literal["message_delta"]
    delta: StopDelta
    usage: MessageUsage = Field(description="totals of the whole message")


class MessageStopEvent(Answer):
    type: Literal["message_stop"]


class PingEvent(Answer):
    """Sent while nothing else goes out (every 30 s)."""

    type: Literal["ping"]


class MessageErrorEvent(Answer):
    """An error after the stream began (before it, the answer is an error status)."""

    type: Literal["error"]
    error: ErrorDetail


class MessageEvent(RootModel[Annotated[
        MessageStartEvent | ContentBlockStartEvent | ContentBlockDeltaEvent
        | ContentBlockStopEvent | MessageDeltaEvent | MessageStopEvent | PingEvent
        | MessageErrorEvent, Field(discriminator="type")]]):
    """One SSE ``data:`` of a streamed message; the event's name is its ``type``."""
