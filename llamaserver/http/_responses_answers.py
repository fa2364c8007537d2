"""Typed models of OpenAI's Responses answers (``_responses``), and of the prompt's token
count that /v1/responses/input_tokens and /v1/chat/completions/input_tokens give, for the
OpenAPI document.

As in ``_llama_answers``: the view builds dicts, these models describe them, and
``tests/server/test_openapi.py`` holds real answers, whole and streamed, to them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, RootModel

from ._llama_answers import Answer, ErrorDetail, Timings
from ._openai_answers import PromptTokensDetails

ItemStatus = Literal["in_progress", "completed", "incomplete"]
# Lists this server always sends empty (no annotations, logprobs or reasoning summaries).
Empty = Annotated[list[Any], Field(max_length=0, description="always empty here")]


class InputTokens(Answer):
    """The prompt's token count: the same template, tools and tokenizer as a generation."""

    object: Literal["response.input_tokens"]
    input_tokens: int


# ---- output items ---------------------------------------------------------------------------
class OutputText(Answer):
    type: Literal["output_text"]
    text: str
    annotations: Empty
    logprobs: Empty


class MessageItem(Answer):
    type: Literal["message"]
    id: str
    status: ItemStatus = Field(description="incomplete when max_output_tokens cut the text")
    role: Literal["assistant"]
    content: list[OutputText] = Field(max_length=1, description="empty while in progress")


class ReasoningText(Answer):
    type: Literal["reasoning_text"]
    text: str


class ReasoningItem(Answer):
    type: Literal["reasoning"]
    id: str
    summary: Empty
    content: list[ReasoningText] = Field(max_length=1, description="empty while in progress")
    encrypted_content: Literal[""]
    status: ItemStatus


class FunctionCallItem(Answer):
    type: Literal["function_call"]
    id: str = Field(description="fc_..., the item's id")
    call_id: str = Field(description="call_..., what a function_call_output answers")
    name: str
    arguments: str = Field(description="the arguments as JSON text (empty while in progress)")
    status: ItemStatus


OutputItem = Annotated[ReasoningItem | MessageItem | FunctionCallItem,
                       Field(discriminator="type")]


# ---- the response ---------------------------------------------------------------------------
class ResponseUsage(Answer):
    input_tokens: int
    input_tokens_details: PromptTokensDetails
    output_tokens: int
    total_tokens: int


class IncompleteDetails(Answer):
    reason: Literal["max_output_tokens"]


class ReasoningSettings(Answer):
    effort: str | None
    summary: None


class TextSettings(Answer):
    format: dict[str, Any] = Field(description="the request's text.format ({\"type\": "
                                               "\"text\"} without one)")


class ResponseObject(Answer):
    """A response: its output items (the reasoning, the message unless the answer is only
    tool calls, then the calls) and the request's settings, echoed."""

    id: str
    object: Literal["response"]
    created_at: int
    status: ItemStatus
    completed_at: int | None
    error: None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: None
    reasoning: ReasoningSettings
    store: Literal[False]
    temperature: float | None
    text: TextSettings
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_p: float | None
    truncation: Literal["auto", "disabled"]
    usage: ResponseUsage | None = Field(description="null while in progress")
    user: str | None
    metadata: dict[str, str]


# ---- streamed events (each SSE event is named by its data's type) --------------------------
class _Event(Answer):
    sequence_number: int = Field(description="0, 1, 2, ... in the order sent")


class ResponseStateEvent(_Event):
    type: Literal["response.created", "response.in_progress"]
    response: ResponseObject


class ResponseCompletedEvent(_Event):
    """The last event, also for an answer cut short (its status says incomplete)."""

    type: Literal["response.completed"]
    response: ResponseObject
    timings: Timings


class OutputItemEvent(_Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class _ItemEvent(_Event):
    item_id: str
    output_index: int


class _PartEvent(_ItemEvent):
    content_index: int


class ContentPartEvent(_PartEvent):
    type: Literal["response.content_part.added", "response.content_part.done"]
    part: OutputText


class OutputTextDeltaEvent(_PartEvent):
    type: Literal["response.output_text.delta"]
    delta: str
    logprobs: Empty


class OutputTextDoneEvent(_PartEvent):
    type: Literal["response.output_text.done"]
    text: str
    logprobs: Empty


class ReasoningTextDeltaEvent(_PartEvent):
    type: Literal["response.reasoning_text.delta"]
    delta: str


class ReasoningTextDoneEvent(_PartEvent):
    type: Literal["response.reasoning_text.done"]
    text: str


class ArgumentsDeltaEvent(_ItemEvent):
    type: Literal["response.function_call_arguments.delta"]
    delta: str


class ArgumentsDoneEvent(_ItemEvent):
    type: Literal["response.function_call_arguments.done"]
    name: str
    arguments: str


class ResponseErrorEvent(_Event):
    """An error after the stream began (before it, the answer is an error status)."""

    type: Literal["error"]
    code: str = Field(description="the error's type")
    message: str
    param: None
    error: ErrorDetail


class ResponseEvent(RootModel[Annotated[
        ResponseStateEvent | ResponseCompletedEvent | OutputItemEvent | ContentPartEvent
        | OutputTextDeltaEvent | OutputTextDoneEvent | ReasoningTextDeltaEvent
        | ReasoningTextDoneEvent | ArgumentsDeltaEvent | ArgumentsDoneEvent
        | ResponseErrorEvent, Field(discriminator="type")]]):
    """One SSE ``data:`` of a streamed response; the event's name is its ``type``.  A
    comment line (``:``) keeps a silent stream alive."""
