"""A chat conversation as a prompt: content parts, tools, thinking, and continuations.

The conversation is rendered by the engine's ``ChatTemplate`` (llama_ffi's sandboxed Jinja),
in the server's worker pool.  As in today's llama-server, a conversation that ends with an
assistant message is continued, not answered (``--no-prefill-assistant`` turns that off), and
``continue_final_message`` asks for it explicitly; the continued text is the start of the
answer.  Tools go to a template that has a tool-call format of its own (``_tool_formats``) as
its ``tools`` variable, otherwise into a system note (``_tools``); the template's thinking
tags and ``enable_thinking`` come from ``_reasoning``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from ..engine import Engine
from ._body import ApiModel
from ._errors import invalid, not_supported
from ._media import MediaPolicy, decode_base64, load_url, require_projector
from ._reasoning import ReasoningFormat, ThinkTags, opens_thinking, template_variables, think_tags
from ._tool_formats import NativeTools, native_history, tool_format
from ._tools import ToolPlan, check_tools, generic_plan, messages_for_tools

if TYPE_CHECKING:
    from ..settings import ServerSettings


@dataclass(frozen=True)
class ChatDefaults:
    """The server-wide chat settings, with upstream's defaults (one mapping from settings)."""

    template_kwargs: Mapping[str, Any] = field(default_factory=dict)  # -rea on/off included
    prefill_assistant: bool = True
    reasoning_format: ReasoningFormat = "auto"
    reasoning_budget: int = -1
    reasoning_budget_message: str = ""
    parse_output: bool = True   # off: --skip-chat-parsing, everything is content

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> ChatDefaults:
        return cls(template_kwargs=settings.template_kwargs(),
                   prefill_assistant=settings.prefill_assistant,
                   reasoning_format=settings.reasoning_format,
                   reasoning_budget=settings.reasoning_budget,
                   reasoning_budget_message=settings.reasoning_budget_message or "",
                   parse_output=not settings.skip_chat_parsing)


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
# goes to the projector (a 400 without --mmproj; video, image and file parts are 501).  The tags are bracketed because
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
    reasoning_content: str | None = None   # an earlier turn's thinking, for the template
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
    reasoning_effort: str | None = None   # "none": no thinking; a level goes to the template


@dataclass(frozen=True)
class ChatPrompt:
    text: str      # the rendered prompt, continued text included
    prefill: str   # the assistant text the answer continues ("" when it starts afresh)
    media: list[bytes] = field(default_factory=list)  # for the text's media markers, in order
    tags: ThinkTags | None = None      # the template's thinking tags
    opened: bool = False               # the generation prompt opened a thinking block
    tools: ToolPlan | None = None      # tools in the generic JSON form
    native: NativeTools | None = None  # tools in the template's own format


class _Media:
    """The media of a conversation's content parts, collected in prompt order."""

    def __init__(self, engine: Engine, policy: MediaPolicy) -> None:
        self._engine, self._policy = engine, policy
        self.items: list[bytes] = []

    def add(self, part: dict[str, Any], where: str) -> str:
        """The marker that stands for ``part`` in the message's text."""
        kind = part.get("type")
        marker = require_projector(self._engine, where)
        if kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            self.items.append(load_url(url, f"{where}.image_url.url", self._policy))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict):
                raise invalid(f"'{where}.input_audio' must be {{\"data\": base64, \"format\"}}")
            self.items.append(decode_base64(audio.get("data"), f"{where}.input_audio.data",
                                            self._policy))
        else:
            raise not_supported(f"'{where}': {kind!r} content is not supported")
        return marker


def _flatten_content(message: ChatMessage, media: _Media, where: str) -> dict[str, Any]:
    """A message as the template sees it: extra fields kept, text parts joined, media parts as
    this server's marker."""
    data = message.model_dump(exclude_none=True)
    content = message.content
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if isinstance(part, TextPart):
                texts.append(part.text)
            else:
                texts.append(media.add(part.model_dump(exclude_none=True),
                                       f"{where}.content.{k}"))
        data["content"] = "\n".join(texts)
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


def render_chat(engine: Engine, opts: ChatTemplateOptions, policy: MediaPolicy,
                defaults: ChatDefaults | None = None) -> ChatPrompt:
    """The prompt of a chat request (blocking: templates run and media parts are loaded
    here).  ``defaults`` are the server's chat settings; the request's
    ``chat_template_kwargs`` win over the server's template variables."""
    defaults = defaults if defaults is not None else ChatDefaults()
    template = engine.chat_template
    source = "" if template.is_builtin else template.source  # built-ins render no tools
    tags = think_tags(source)
    choice = check_tools(opts.tools, opts.tool_choice, opts.parallel_tool_calls)
    fmt = tool_format(source)
    native = NativeTools(fmt, choice) if fmt is not None and choice is not None else None
    plan = generic_plan(choice) if choice is not None and native is None else None
    media = _Media(engine, policy)
    flat = [_flatten_content(m, media, f"messages.{i}") for i, m in enumerate(opts.messages)]
    continues = _continues(opts, defaults.prefill_assistant)
    prefill = flat.pop()["content"] if continues else ""
    if plan is not None:  # the tools go in as a system note, not through the template
        flat = messages_for_tools(flat, plan)
    elif fmt is not None:  # earlier calls in the template's shapes, with or without tools now
        flat = native_history(flat)
    # chat_template_kwargs as data, not as keywords: a reserved name is a TemplateError (400)
    variables = template_variables(defaults.template_kwargs, opts.chat_template_kwargs,
                                   opts.reasoning_effort, thinks=tags is not None)
    text = template.render(flat, add_generation_prompt=continues or opts.add_generation_prompt,
                           tools=native.template_tools if native is not None else None,
                           variables=variables)
    return ChatPrompt(text + prefill, prefill, media.items, tags=tags,
                      opened=opens_thinking(tags, text), tools=plan, native=native)
