"""Anthropic's Messages request, and its one conversion into the chat pipeline's request.

As llama-server does, the request becomes an OpenAI chat request: ``system`` the first
message, ``tool_use`` blocks an assistant's ``tool_calls``, ``tool_result`` blocks ``tool``
messages, ``tools`` functions and ``tool_choice`` (auto / any / tool / none) the chat's own.
Safer than upstream: every block is checked (a wrong type, a ``tool_result`` for an id no
earlier ``tool_use`` gave, a block in the wrong role, a built-in tool are 400s, not ignored).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from ._body import ApiModel, JsonInt, validate
from ._chat import ChatRequest
from ._chat_bridge import ToolCallIds
from ._errors import invalid

MAX_TOKENS = 2**31 - 1


class AnthropicMessage(ApiModel):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class AnthropicTool(ApiModel):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None   # "custom", or one of Anthropic's built-in tools (refused)


class AnthropicToolChoice(ApiModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AnthropicMetadata(ApiModel):
    user_id: str | None = None


class AnthropicThinking(ApiModel):
    # "enabled" or "disabled"; another ("adaptive") leaves the template's default
    type: str
    budget_tokens: JsonInt | None = Field(None, ge=0, le=MAX_TOKENS)


class AnthropicOutputConfig(ApiModel):
    effort: str | None = None
    format: dict[str, Any] | None = None   # {"type": "json_schema", "schema": {...}}


class MessagesRequest(ApiModel):
    """POST /v1/messages and /v1/messages/count_tokens (which needs no ``max_tokens``)."""

    model: str | None = None
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    # Required by Anthropic; absent, the server's -n applies (llama-server is permissive too).
    max_tokens: JsonInt | None = Field(None, ge=1, le=MAX_TOKENS)
    stop_sequences: list[str] | None = None
    stream: bool = False
    # Anthropic's range is 0-1; above it is what llama-server (and the chat endpoint) accept
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: JsonInt | None = Field(None, ge=0, le=MAX_TOKENS)
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    metadata: AnthropicMetadata | None = None
    thinking: AnthropicThinking | None = None
    output_config: AnthropicOutputConfig | None = None
    chat_template_kwargs: dict[str, Any] | None = None   # llama-server's extension


def to_chat(req: MessagesRequest) -> ChatRequest:
    """The chat request that ``req`` asks for (400 for what cannot be converted)."""
    messages: list[dict[str, Any]] = []
    if req.system is not None:
        messages.append({"role": "system", "content": _system(req.system)})
    tool_ids = ToolCallIds()
    last = len(req.messages) - 1
    for index, message in enumerate(req.messages):
        messages.extend(_message(index, message, tool_ids, last=index == last))
    chat: dict[str, Any] = {"messages": messages, "stream": req.stream}
    for name in ("model", "max_tokens", "temperature", "top_p", "top_k"):
        if getattr(req, name) is not None:
            chat[name] = getattr(req, name)
    if req.stop_sequences:
        chat["stop"] = req.stop_sequences
    if req.tools:
        chat["tools"] = [_tool(index, tool) for index, tool in enumerate(req.tools)]
    if req.tool_choice is not None:
        chat["tool_choice"], chat["parallel_tool_calls"] = _tool_choice(req.tool_choice)
    if req.metadata is not None and req.metadata.user_id:
        chat["user"] = req.metadata.user_id
    if req.output_config is not None and req.output_config.format is not None:
        chat["response_format"] = _output_format(req.output_config.format)
    chat.update(_thinking(req))
    return validate(ChatRequest, chat)


def _thinking(req: MessagesRequest) -> dict[str, Any]:
    """Thinking on or off reaches the template as --reasoning does (enable_thinking, over the
    server's value), its budget as the chat's thinking budget, the effort as the chat's."""
    fields: dict[str, Any] = {}
    kwargs = dict(req.chat_template_kwargs or {})
    thinking = req.thinking
    if thinking is not None and thinking.type in ("enabled", "disabled"):
        kwargs["enable_thinking"] = thinking.type == "enabled"
        if thinking.type == "enabled" and thinking.budget_tokens is not None:
            fields["thinking_budget_tokens"] = thinking.budget_tokens  # upstream's name
    if kwargs:
        fields["chat_template_kwargs"] = kwargs
    if req.output_config is not None and req.output_config.effort is not None:
        fields["reasoning_effort"] = req.output_config.effort
    return fields


def _output_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """Structured output: the chat's json_schema response format, held by a grammar."""
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise invalid("'output_config.format' must be {\"type\": \"json_schema\", "
                      "\"schema\": {...}}")
    return {"type": "json_schema", "json_schema": {"schema": fmt["schema"]}}


def _system(system: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    return [_text_part(block, f"system[{i}]") for i, block in enumerate(system)]


def _text_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    if block.get("type") != "text":
        raise invalid(f"'{where}' must be a text block ({{\"type\": \"text\", \"text\": ...}})")
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"'{where}.text' must be a string")
    return {"type": "text", "text": text}


def _message(index: int, message: AnthropicMessage, tool_ids: ToolCallIds, *,
             last: bool) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: tool results first (they answer the turn
    before), then the message's own text and tool calls."""
    where = f"messages[{index}]"
    role, content = message.role, message.content
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not content and not (last and role == "assistant"):
        raise invalid(f"'{where}.content' must not be empty")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    thinking: list[str] = []
    for k, block in enumerate(content):
        at = f"{where}.content[{k}]"
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, at))
        elif kind == "image":
            parts.append(_image(block, at))
        elif (kind, role) == ("tool_use", "assistant"):
            calls.append(_tool_use(block, at, tool_ids))
        elif (kind, role) == ("tool_result", "user"):
            results.append(_tool_result(block, at, tool_ids))
        elif (kind, role) == ("thinking", "assistant"):
            if isinstance(block.get("thinking"), str):
                thinking.append(block["thinking"])
        elif (kind, role) == ("redacted_thinking", "assistant"):
            continue  # encrypted for Anthropic's own models: nothing a local model can read
        elif kind in ("tool_use", "tool_result", "thinking", "redacted_thinking"):
            raise invalid(f"'{at}': a {kind} block cannot be in a {role} message")
        else:
            raise invalid(f"'{at}.type' {kind!r} is not supported here (text, image, tool_use, "
                          "tool_result and thinking blocks are)")
    out = results
    if parts or calls or thinking:
        converted: dict[str, Any] = {"role": role, "content": parts}
        if calls:
            converted["tool_calls"] = calls
        if thinking:
            converted["reasoning_content"] = "".join(thinking)
        out.append(converted)
    return out


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An image block as the chat's image part (the chat pipeline decides if it can see)."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source.get("data"), str):
        media = source.get("media_type")
        url = f"data:{media if isinstance(media, str) else 'image/jpeg'};base64,{source['data']}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise invalid(f"'{where}.source' must be {{\"type\": \"base64\", \"media_type\", "
                      "\"data\"}} or {\"type\": \"url\", \"url\"}")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_use(block: dict[str, Any], where: str, tool_ids: ToolCallIds) -> dict[str, Any]:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise invalid(f"'{where}.input' must be an object")
    return tool_ids.call(where, "id", block.get("id"), block.get("name"),
                         json.dumps(arguments, ensure_ascii=False))


def _tool_result(block: dict[str, Any], where: str, tool_ids: ToolCallIds) -> dict[str, Any]:
    call_id = tool_ids.answered(where, "tool_use_id", block.get("tool_use_id"),
                                "a tool_use block of an earlier assistant message")
    content = block.get("content", "")
    if isinstance(content, list):
        content = "\n".join(_text_part(part, f"{where}.content[{i}]")["text"]
                            for i, part in enumerate(content))
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise invalid(f"'{where}.content' must be a string or a list of text blocks")
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _tool(index: int, tool: AnthropicTool) -> dict[str, Any]:
    if tool.type not in (None, "custom"):
        raise invalid(f"tools[{index}]: Anthropic's built-in tool {tool.type!r} is not "
                      "supported by this server; describe a custom tool with name and "
                      "input_schema")
    if tool.input_schema is None:
        raise invalid(f"'tools[{index}].input_schema' is required")
    return {"type": "function", "function": {"name": tool.name,
                                             "description": tool.description or "",
                                             "parameters": tool.input_schema}}


def _tool_choice(choice: AnthropicToolChoice) -> tuple[Any, bool | None]:
    """(the chat's tool_choice, parallel_tool_calls).  One call per answer unless the client
    says ``disable_parallel_tool_use: false`` (upstream's chat default is one call too)."""
    parallel = True if choice.disable_parallel_tool_use is False else None
    if choice.type == "tool":
        if not choice.name:
            raise invalid("'tool_choice.name' is required when its type is \"tool\"")
        return {"type": "function", "function": {"name": choice.name}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type], parallel
