"""OpenAI's Responses request, and its one conversion into the chat pipeline's request.

As llama-server does: ``instructions`` become the system message, ``input`` (a string, or a
list of message, ``function_call``, ``function_call_output`` and ``reasoning`` items) the
conversation, function ``tools`` the chat's tools, ``max_output_tokens`` its ``max_tokens``;
``text.format`` becomes the chat's ``response_format``.  What a stateless server without
built-in tools cannot do (``previous_response_id``, ``conversation``, ``background``, stored
``prompt`` templates, web search and other hosted tools, file inputs, logprobs) is a 400 that
says so, where llama-server skips some of it silently.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._body import ApiModel, JsonInt, validate
from ._chat import ChatRequest
from ._chat_bridge import ToolCallIds
from ._errors import invalid


class TextOptions(ApiModel):
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class ResponsesRequest(ApiModel):
    """POST /v1/responses and /v1/responses/input_tokens."""

    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: JsonInt | None = Field(None, ge=1, le=2**31 - 1)
    temperature: float | None = Field(None, ge=0)   # OpenAI's 0-2, but llama-server takes more
    top_p: float | None = Field(None, ge=0, le=1)
    stream: bool = False
    text: TextOptions | None = None
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: JsonInt | None = Field(None, ge=0, le=20)
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None   # llama-server's extension


def check_supported(req: ResponsesRequest) -> None:
    """400 for what needs state or services this server does not have."""
    if req.previous_response_id:
        raise invalid("'previous_response_id' is not supported: this server stores no "
                      "responses; send the whole conversation in 'input'")
    if req.conversation is not None:
        raise invalid("'conversation' is not supported: this server stores no conversations; "
                      "send the whole conversation in 'input'")
    if req.background:
        raise invalid("'background' responses are not supported by this server")
    if req.prompt is not None:
        raise invalid("stored prompt templates ('prompt') are not supported by this server")
    if req.top_logprobs:
        raise invalid("'top_logprobs' is not supported by /v1/responses on this server; use "
                      "/v1/chat/completions with 'logprobs'")


def to_chat(req: ResponsesRequest) -> ChatRequest:
    """The chat request that ``req`` asks for (400 for what cannot be converted)."""
    check_supported(req)
    messages: list[dict[str, Any]] = []
    if req.instructions is not None:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        messages.append({"role": "user", "content": req.input})
    elif not req.input:
        raise invalid("'input' must not be an empty list")
    else:
        call_ids = ToolCallIds()
        for index, item in enumerate(req.input):
            _add_item(messages, item, f"input[{index}]", call_ids)
    # as llama-server does, the fields Responses does not know go to the chat request as they
    # are (llama.cpp's own: top_k, reasoning_budget, ...), checked there
    chat: dict[str, Any] = {**(req.model_extra or {}), "messages": messages,
                            "stream": req.stream, "n": 1}   # a response has one answer
    for name in ("model", "temperature", "top_p", "parallel_tool_calls", "user"):
        if getattr(req, name) is not None:
            chat[name] = getattr(req, name)
    if req.max_output_tokens is not None:
        chat["max_tokens"] = req.max_output_tokens
    if req.tools:
        chat["tools"] = [_tool(index, tool) for index, tool in enumerate(req.tools)]
    if req.tool_choice is not None:
        chat["tool_choice"] = _tool_choice(req.tool_choice)
    if req.text is not None and req.text.format is not None:
        response_format = _response_format(req.text.format)
        if response_format is not None:
            chat["response_format"] = response_format
    if req.chat_template_kwargs is not None:
        chat["chat_template_kwargs"] = req.chat_template_kwargs
    if req.reasoning is not None and req.reasoning.get("effort") is not None:
        chat["reasoning_effort"] = req.reasoning["effort"]  # upstream's mapping ("none": off)
    return validate(ChatRequest, chat)


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], where: str,
              call_ids: ToolCallIds) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role in ("user", "system", "developer"):
            # developer instructions are what the system message is to chat templates
            messages.append({"role": "system" if role == "developer" else role,
                             "content": _content(item.get("content"), where, _INPUT_PARTS)})
        elif role == "assistant":
            messages.append({"role": "assistant",
                             "content": _content(item.get("content"), where, _OUTPUT_PARTS)})
        else:
            raise invalid(f"'{where}.role' must be \"user\", \"assistant\", \"system\" or "
                          f"\"developer\" (got {role!r})")
    elif kind == "function_call":
        if not isinstance(item.get("arguments"), str):
            raise invalid(f"'{where}.arguments' must be a string of JSON")
        call = call_ids.call(where, "call_id", item.get("call_id"), item.get("name"),
                             item["arguments"])
        _assistant_turn(messages).setdefault("tool_calls", []).append(call)
    elif kind == "function_call_output":
        call_id = call_ids.answered(where, "call_id", item.get("call_id"),
                                    "a function_call item earlier in 'input'")
        output = item.get("output")
        if isinstance(output, list):
            output = "\n".join(part["text"] for part in
                               _parts(output, f"{where}.output", ("input_text",)))
        elif not isinstance(output, str):
            raise invalid(f"'{where}.output' must be a string or a list of input_text parts")
        messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
    elif kind == "reasoning":
        texts = [part.get("text") for part in item.get("content") or []
                 if isinstance(part, dict) and isinstance(part.get("text"), str)]
        if texts:
            _assistant_turn(messages)["reasoning_content"] = "\n".join(texts)
    else:
        raise invalid(f"'{where}.type' {kind!r} is not supported by this server (message, "
                      "function_call, function_call_output and reasoning items are)")


def _assistant_turn(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message that items of one turn (text, calls, reasoning) belong to."""
    if not messages or messages[-1]["role"] != "assistant":
        messages.append({"role": "assistant", "content": ""})
    return messages[-1]


_INPUT_PARTS = ("input_text", "input_image", "input_file")
_OUTPUT_PARTS = ("output_text", "input_text", "refusal")


def _content(content: Any, where: str, allowed: tuple[str, ...]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"'{where}.content' must be a string or a list of content parts")
    return _parts(content, f"{where}.content", allowed)


def _parts(parts: list[Any], where: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Content parts as the chat's parts: text, or an image the chat pipeline may refuse."""
    out = []
    for index, part in enumerate(parts):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise invalid(f"'{at}.type' must be one of {', '.join(allowed)} (got {kind!r})")
        if kind == "input_file":
            raise invalid(f"'{at}': file inputs are not supported by this server")
        if kind == "input_image":
            if not isinstance(part.get("image_url"), str):
                raise invalid(f"'{at}.image_url' must be a URL (uploaded file ids are not "
                              "supported)")
            out.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
            continue
        key = "refusal" if kind == "refusal" else "text"
        if not isinstance(part.get(key), str):
            raise invalid(f"'{at}.{key}' must be a string")
        out.append({"type": "text", "text": part[key]})
    return out


def _tool(index: int, tool: dict[str, Any]) -> dict[str, Any]:
    kind = tool.get("type")
    if kind != "function":
        raise invalid(f"tools[{index}]: {kind!r} tools are not supported by this server (it "
                      "has no hosted tools); describe function tools")
    name, parameters = tool.get("name"), tool.get("parameters")
    if not isinstance(name, str) or not name:
        raise invalid(f"'tools[{index}].name' must be a non-empty string")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    description = tool.get("description")
    return {"type": "function", "function": {
        "name": name, "description": description if isinstance(description, str) else "",
        "parameters": parameters}}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice  # "auto" / "none" / "required": the chat's own (it checks them)
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise invalid("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                  "{\"type\": \"function\", \"name\": ...} on this server")


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")}}
    raise invalid("'text.format.type' must be \"text\", \"json_object\" or \"json_schema\"")
