"""Typed models of the OpenAI-shaped answers, for the OpenAPI document.

As in ``_llama_answers``: the views build dicts (``_chat``, ``_oai_completions``, ``_openai``,
``_embeddings``); these models describe them and a test holds real answers to them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, RootModel

from ._llama_answers import Answer, CompletionResult, ErrorResponse, PromptProgress, Timings

FinishReason = Literal["stop", "length", "tool_calls"]


class PromptTokensDetails(Answer):
    cached_tokens: int


class Usage(Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class _Head(Answer):
    """What every OpenAI completion and chunk starts with."""

    id: str
    created: int
    model: str
    system_fingerprint: str


class _Completed(_Head):
    usage: Usage
    timings: Timings
    verbose: CompletionResult | None = Field(None, alias="__verbose",
                                             description="with the server's -v only")


class _Chunk(_Head):
    usage: Usage | None = Field(None, description="the last chunk, with "
                                                  "stream_options.include_usage")
    timings: Timings | None = None
    prompt_progress: PromptProgress | None = None


# ---- logprobs -------------------------------------------------------------------------------
class ChatTopLogprob(Answer):
    id: int
    token: str
    logprob: float | None = Field(description="null for a probability of 0")
    bytes: list[int]


class ChatTokenLogprob(ChatTopLogprob):
    top_logprobs: list[ChatTopLogprob]


class ChatLogprobs(Answer):
    content: list[ChatTokenLogprob]


class TextLogprobs(Answer):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float | None]] = Field(
        description="alternatives by token text, most likely first")
    text_offset: list[int]


# ---- chat completions -----------------------------------------------------------------------
class FunctionCall(Answer):
    name: str
    arguments: str = Field(description="the arguments as JSON text")


class ToolCall(Answer):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(Answer):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Answer):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(_Completed):
    object: Literal["chat.completion"]
    choices: list[ChatChoice]


class StreamedToolCall(ToolCall):
    index: int


class ChatDelta(Answer):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[StreamedToolCall] | None = None


class ChatChunkChoice(Answer):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletionChunk(_Chunk):
    """A streamed chat chunk; with ``stream_options.include_usage`` the last one has
    ``usage`` and no choices."""

    object: Literal["chat.completion.chunk"]
    choices: list[ChatChunkChoice]


class ChatEvent(RootModel[ChatCompletionChunk | ErrorResponse | Literal["[DONE]"]]):
    """One SSE ``data:`` of a streamed chat completion; the stream ends with ``[DONE]``
    (not JSON)."""


# ---- text completions -----------------------------------------------------------------------
class TextChoice(Answer):
    text: str
    index: int
    logprobs: TextLogprobs | None
    finish_reason: FinishReason | None


class TextCompletion(_Completed):
    object: Literal["text_completion"]
    choices: list[TextChoice]


class TextCompletionChunk(_Chunk):
    object: Literal["text_completion"]
    choices: list[TextChoice]


class TextEvent(RootModel[TextCompletionChunk | ErrorResponse | Literal["[DONE]"]]):
    """One SSE ``data:`` of a streamed text completion; the stream ends with ``[DONE]``."""


# ---- embeddings -----------------------------------------------------------------------------
class EmbeddingData(Answer):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="base64 of little-endian float32 with "
                                                     "encoding_format base64")


class EmbeddingUsage(Answer):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddings(Answer):
    object: Literal["list"]
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
