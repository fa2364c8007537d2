"""A chat conversation as a prompt: content parts, the tool note, and continuations.

The conversation is rendered by the engine's ``ChatTemplate`` (llama_ffi's sandboxed Jinja),
in the server's worker pool.  As in today's llama-server, a conversation that ends with an
assistant message is continued, not answered (``--no-prefill-assistant`` turns that off), and
``continue_final_message`` asks for it explicitly; the continued text is the start of the
answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from ..engine import Engine
from ._body import ApiModel
from ._errors import invalid, not_supported
from ._tools import ToolPlan, messages_for_tools


class TextPart(ApiModel):
    type: Literal["text"]
    text: str


class ImageUrl(ApiModel):
    url: str
    detail: str | None = None


class ImagePart(ApiModel):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(ApiModel):
    data: str
    format: str


class AudioPart(ApiModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


class OtherMediaPart(ApiModel):
    type: Literal["input_video", "image", "file"]


def _part_type(part: Any) -> str | None:
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
    if kind in ("input_video", "image", "file"):
        return "part[media]"
    return f"part[{kind}]" if kind in ("text", "image_url", "input_audio") else None


# A part is read by its "type": a malformed part is a 400 naming it; a well-formed media part
# is a 501 (this server has no multimodal projector yet).  The tags are bracketed because
# pydantic puts the tag into an error's location, and _body leaves such names out of it.
ContentPart = Annotated[
    Annotated[TextPart, Tag("part[text]")] | Annotated[ImagePart, Tag("part[image_url]")]
    | Annotated[AudioPart, Tag("part[input_audio]")]
    | Annotated[OtherMediaPart, Tag("part[media]")],
    Discriminator(_part_type, custom_error_type="invalid_part",
                  custom_error_message="a content part's 'type' must be text, image_url, "
                                       "input_audio, input_video, image or file")]


class FunctionCallIn(ApiModel):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(ApiModel):
    """An earlier tool call in the conversation (an assistant message's ``tool_calls``)."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessage(ApiModel):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class ChatTemplateOptions(ApiModel):
    """What shapes the prompt of a chat (shared by chat completions and /apply-template)."""

    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool | str | None = None


@dataclass(frozen=True)
class ChatPrompt:
    text: str      # the rendered prompt, continued text included
    prefill: str   # the assistant text the answer continues ("" when it starts afresh)


def _flatten_content(message: ChatMessage) -> dict[str, Any]:
    """A message as the template sees it: extra fields kept, text parts joined."""
    data = message.model_dump(exclude_none=True)
    content = message.content
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, TextPart):
                raise not_supported(f"'{part.type}' message content is not supported by this "
                                    "server (it has no multimodal projector)")
        data["content"] = "\n".join(part.text for part in content
                                    if isinstance(part, TextPart))
    elif content is None:
        data["content"] = ""
    return data


def _continues(opts: ChatTemplateOptions, prefill_assistant: bool) -> bool:
    """Whether the final message is continued; upstream's rules, as 400s."""
    messages = opts.messages
    wanted = opts.continue_final_message
    if wanted not in (None, False, True, "content"):
        if wanted == "reasoning_content":
            raise not_supported("continuing a final message's reasoning_content is not "
                                "supported; continue its content")
        raise invalid("'continue_final_message' must be true, false or \"content\"")
    add_generation_prompt = opts.add_generation_prompt
    continues = wanted not in (None, False)
    if not continues and prefill_assistant and messages[-1].role == "assistant":
        if len(messages) >= 2 and messages[-2].role == "assistant":
            raise invalid("Cannot have 2 or more assistant messages at the end of the list.")
        continues, add_generation_prompt = True, False
    if continues and add_generation_prompt:
        raise invalid("Cannot set both add_generation_prompt and continue_final_message to "
                      "true.")
    if continues and messages[-1].role != "assistant":
        raise invalid("'continue_final_message' needs a final assistant message")
    if continues and getattr(messages[-1], "tool_calls", None):
        raise invalid("Cannot continue an assistant message that contains tool calls.")
    return continues


def render_chat(engine: Engine, opts: ChatTemplateOptions, *, plan: ToolPlan | None = None,
                prefill_assistant: bool = True,
                variables: dict[str, Any] | None = None) -> ChatPrompt:
    """``variables`` are the server's template variables (--chat-template-kwargs, --reasoning);
    the request's ``chat_template_kwargs`` win over them."""
    template = engine.chat_template
    flat = [_flatten_content(m) for m in opts.messages]
    continues = _continues(opts, prefill_assistant)
    prefill = flat.pop()["content"] if continues else ""
    if plan is not None:  # the tools go in as a system note, not through the template
        flat = messages_for_tools(flat, plan)
    # chat_template_kwargs as data, not as keywords: a reserved name is a TemplateError (400)
    text = template.render(flat, add_generation_prompt=continues or opts.add_generation_prompt,
                           variables={**(variables or {}), **(opts.chat_template_kwargs or {})})
    return ChatPrompt(text + prefill, prefill)
