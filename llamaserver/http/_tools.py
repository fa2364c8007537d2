"""Tool calls in chat completions, in a generic JSON form that works with any model.

With ``tools`` (and ``tool_choice`` other than "none"), the conversation gets a system note that
lists the tools, and the answer is constrained by a grammar to one JSON object: either
``{"tool_call": {"name", "arguments"}}`` (``"tool_calls": [...]`` when ``parallel_tool_calls``)
or, when the model may also answer in words (``tool_choice`` "auto"), ``{"response": "..."}``.
The object is then turned into OpenAI's ``tool_calls`` or plain ``content``.  This is the form
of models whose chat template declares no tool-call format of its own; those that do
(Hermes' ``<tool_call>``, Llama 3.x's JSON, Mistral's ``[TOOL_CALLS]``) are asked and read in
their own (``_tool_formats``).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from .._json_grammar import SchemaError, schema_to_grammar
from ._errors import invalid
from ._resolve import Grammar


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class ToolPlan:
    """What a chat request with tools asks of the model, and how to read its answer."""

    tools: list[dict[str, Any]]   # the functions: {"name", "description", "parameters"}
    required: bool                # a tool must be called (tool_choice "required" or a name)
    parallel: bool                # several calls in one answer
    grammar: str   # a Grammar naming "tools" (a native format's may be composed)
    note: str                     # the system note that describes the tools and the format

    def read(self, text: str, cut: bool = False) -> tuple[str | None, list[dict[str, Any]]]:
        """(content, tool_calls) from the model's JSON answer.  An answer cut short by the
        token limit gives the part of its ``response`` text that came (no content when it
        was a call), never the JSON around it; other unreadable answers are kept as text."""
        try:
            answer = json.loads(text)
        except ValueError:
            return (_partial_response(text) if cut else text), []
        if not isinstance(answer, dict):
            return text, []
        if "response" in answer and isinstance(answer["response"], str):
            return answer["response"], []
        calls = answer.get("tool_calls")
        if calls is None and "tool_call" in answer:
            calls = [answer["tool_call"]]
        if not isinstance(calls, list):
            return text, []
        out = []
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                return text, []
            out.append({"id": new_call_id(), "type": "function",
                        "function": {"name": call["name"],
                                     "arguments": json.dumps(call.get("arguments", {}),
                                                             ensure_ascii=False)}})
        return None, out


@dataclass(frozen=True)
class ToolChoice:
    """The validated ``tools`` and ``tool_choice`` of a request that may call a tool."""

    tools: list[dict[str, Any]]    # every function: {"name", "description", "parameters"}
    chosen: list[dict[str, Any]]   # those the model may call now
    required: bool                 # a tool must be called (tool_choice "required" or a name)
    parallel: bool


def check_tools(tools: Any, tool_choice: Any, parallel: bool | None) -> ToolChoice | None:
    """Validate ``tools``/``tool_choice`` (400s); None when no tool may be called."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise invalid("'tool_choice' needs 'tools'")
        return None
    if not isinstance(tools, list):
        raise invalid("'tools' must be an array of {\"type\": \"function\", \"function\": {...}}")
    functions: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise invalid(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"tools[{i}].function.name must be a non-empty string")
        if any(f["name"] == name for f in functions):
            raise invalid(f"tools[{i}]: the function name {name!r} is used twice")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise invalid(f"tools[{i}].function.parameters must be a JSON schema object")
        functions.append({"name": name, "description": str(fn.get("description", "")),
                          "parameters": params})

    if tool_choice in (None, "auto"):
        chosen, required = functions, False
    elif tool_choice == "none":
        return None
    elif tool_choice == "required":
        chosen, required = functions, True
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        chosen = [f for f in functions if f["name"] == name]
        if not chosen:
            raise invalid(f"'tool_choice' names {name!r}, which is not one of the tools")
        required = True
    else:
        raise invalid("'tool_choice' must be \"none\", \"auto\", \"required\" or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    return ToolChoice(functions, chosen, required, bool(parallel))


def call_schema(chosen: list[dict[str, Any]], arguments_key: str = "arguments"
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of one call ``{"name": ..., arguments_key: {...}}`` of a chosen tool,
    and the ``$defs``/``definitions`` it refers to, which belong at the schema's root."""
    # Each tool's "$defs"/"definitions" move to the root, where its "#/$defs/..." refs resolve.
    shared: dict[str, dict[str, Any]] = {}
    arguments = []
    for f in chosen:
        params = dict(f["parameters"])
        for key in ("$defs", "definitions"):
            defs = params.pop(key, None)
            if defs is None:
                continue
            if not isinstance(defs, dict):
                raise invalid(f"{f['name']}: '{key}' must be an object")
            for name, sub in defs.items():
                if shared.setdefault(key, {}).setdefault(name, sub) != sub:
                    raise invalid(f"tools define {key}/{name} differently; rename one of them")
        arguments.append(params)
    call = {"anyOf": [{"type": "object", "properties": {"name": {"const": f["name"]},
                                                         arguments_key: args},
                       "required": ["name", arguments_key], "additionalProperties": False}
                      for f, args in zip(chosen, arguments)]}
    return call, shared


def tools_grammar(schema: dict[str, Any], root: str = "root") -> Grammar:
    """Compact GBNF for a schema made of :func:`call_schema` (400 when it is not usable)."""
    try:
        return Grammar(schema_to_grammar(schema, root=root, compact=True), "tools")
    except SchemaError as exc:
        raise invalid(f"a tool's parameters in 'tools' are not a usable JSON schema: {exc}"
                      ) from None


_RESPONSE_START = re.compile(r'\s*\{\s*"response"\s*:\s*"')


def _partial_response(text: str) -> str | None:
    """The text of a ``{"response": "...`` answer that was cut short, or None."""
    start = _RESPONSE_START.match(text)
    if start is None:
        return None
    rest = text[start.end():]
    for cut in range(min(len(rest), 12) + 1):  # a cut escape (\u00) is up to 6 characters
        try:
            value = json.loads('"' + rest[:len(rest) - cut] + '"')
        except ValueError:
            continue
        return value if isinstance(value, str) else None
    return None


def plan_tools(tools: Any, tool_choice: Any, parallel: bool | None) -> ToolPlan | None:
    """Validate ``tools``/``tool_choice`` (400s) and build the plan; None when no tool may be called."""
    choice = check_tools(tools, tool_choice, parallel)
    return generic_plan(choice) if choice is not None else None


def generic_plan(choice: ToolChoice) -> ToolPlan:
    """The system note and the grammar of the generic JSON form."""
    chosen, required, parallel = choice.chosen, choice.required, choice.parallel
    call, shared = call_schema(chosen)
    calls = ({"type": "object", "properties": {"tool_calls": {"type": "array", "items": call,
                                                              "minItems": 1}},
              "required": ["tool_calls"], "additionalProperties": False} if parallel else
             {"type": "object", "properties": {"tool_call": call}, "required": ["tool_call"],
              "additionalProperties": False})
    schema = calls if required else {"anyOf": [calls, {
        "type": "object", "properties": {"response": {"type": "string"}},
        "required": ["response"], "additionalProperties": False}]}
    grammar = tools_grammar({**schema, **shared})
    return ToolPlan(choice.tools, required, parallel, grammar, _note(chosen, required, parallel))


def _note(functions: list[dict[str, Any]], required: bool, parallel: bool) -> str:
    listing = json.dumps(functions, ensure_ascii=False, indent=2)
    key = ('{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}' if parallel
           else '{"tool_call": {"name": ..., "arguments": {...}}}')
    lines = ["You can call these tools (functions):", listing, "",
             f"To call a tool, answer with JSON only: {key}."]
    if not required:
        lines.append('To answer the user directly instead, answer with JSON only: '
                     '{"response": "your answer"}.')
    return "\n".join(lines)


def messages_for_tools(messages: list[dict[str, Any]], plan: ToolPlan) -> list[dict[str, Any]]:
    """The conversation as the template sees it: the note in the system message, and earlier
    tool calls and tool results written in the same JSON form the model is asked to use."""
    out: list[dict[str, Any]] = []
    for message in messages:
        message = dict(message)
        calls = message.pop("tool_calls", None)
        if message.get("role") == "assistant" and calls:
            named = [{"name": name, "arguments": arguments}
                     for _, name, arguments in history_calls(calls)]
            body = {"tool_calls": named} if plan.parallel or len(named) > 1 else {"tool_call": named[0]}
            message["content"] = json.dumps(body, ensure_ascii=False)
        elif message.get("role") == "tool":
            message["content"] = json.dumps({"tool_response": {
                "tool_call_id": message.pop("tool_call_id", None),
                "content": message.get("content", "")}}, ensure_ascii=False)
        out.append(message)
    if out and out[0].get("role") == "system":
        out[0] = {**out[0], "content": f"{out[0].get('content', '')}\n\n{plan.note}".lstrip()}
    else:
        out.insert(0, {"role": "system", "content": plan.note})
    return out


def history_calls(calls: Any) -> list[tuple[Any, str, Any]]:
    """(id, name, arguments) of an assistant message's ``tool_calls`` (400 when malformed);
    arguments sent as a JSON string are parsed (a string that is no JSON stays a string)."""
    out = []
    for call in calls if isinstance(calls, list) else [None]:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid("an assistant message's tool_calls must be "
                          "[{\"function\": {\"name\": ..., \"arguments\": ...}}]")
        out.append((call.get("id"), fn["name"], _arguments(fn.get("arguments"))))
    return out


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw if raw is not None else {}
