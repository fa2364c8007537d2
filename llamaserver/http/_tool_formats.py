"""Tool calls in a model's own format, where its chat template declares one.

A template that writes tool calls in a known shape (``FORMATS``, found by markers in its
source) is given the tools itself (the ``tools`` variable) and renders the conversation's
tool calls and results in its own shapes; the model's answer is read in that format
(``_tool_parse``).  With ``tool_choice`` "required" or a named function, a grammar holds the
answer to one or more calls in the format (even a model that never learnt it then writes a
valid call).  With "auto" the answer is left free and read as it comes: upstream arms a
"lazy" grammar at the first call marker, but libllama's lazy grammars are its own sampler,
outside the ``SamplerChain`` the engine samples with, so nothing is armed here.

Templates with no known format keep the generic JSON form of ``_tools``.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._json_grammar import gbnf_literal
from ._tool_parse import CallReader, HermesReader, Llama3Reader, MistralReader
from ._tools import ToolChoice, call_schema, history_calls, new_call_id, tools_grammar

_CALL = "tool-call"   # the grammar rule of one call's JSON


def _mistral_id() -> str:
    # Mistral's templates accept only ids of nine letters and digits
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(9))


def _repeated(one: str, separator: str, parallel: bool) -> str:
    return f"{one} ({gbnf_literal(separator)} {one})*" if parallel else one


@dataclass(frozen=True)
class ToolFormat:
    name: str
    markers: tuple[str, ...]        # all of them in a template's source: the template uses it
    arguments_key: str              # where a call's arguments are, in the model's output
    reader_class: type[CallReader]
    calls: Callable[[bool], str]    # the GBNF of the answer (rule ``tool-call`` is one call)
    new_id: Callable[[], str] = new_call_id

    def reader(self) -> CallReader:
        return self.reader_class(self.new_id)

    def grammar(self, choice: ToolChoice) -> str:
        """The answer's grammar: calls of the chosen tools in this format, compact JSON."""
        call, shared = call_schema(choice.chosen, self.arguments_key)
        return f"root ::= {self.calls(choice.parallel)}\n" + tools_grammar({**call, **shared},
                                                                          root=_CALL)


# The detection table: the first format whose markers are all in the template wins.
FORMATS = (
    ToolFormat("hermes", ("<tool_call>",), "arguments", HermesReader,
               lambda parallel: _repeated(f'"<tool_call>\\n" {_CALL} "\\n</tool_call>"', "\n",
                                          parallel)),
    ToolFormat("mistral", ("[TOOL_CALLS]",), "arguments", MistralReader,
               lambda parallel: f'"[TOOL_CALLS][" {_repeated(_CALL, ", ", parallel)} "]"',
               _mistral_id),
    ToolFormat("llama3", ("<|start_header_id|>", "ipython"), "parameters", Llama3Reader,
               lambda parallel: _repeated(_CALL, "\n", parallel)),
)


def tool_format(source: str) -> ToolFormat | None:
    """The tool-call format a chat template declares, or None (the generic JSON form)."""
    for fmt in FORMATS:
        if all(marker in source for marker in fmt.markers):
            return fmt
    return None


@dataclass(frozen=True)
class NativeTools:
    """A chat request's tools in the model's own format."""

    format: ToolFormat
    choice: ToolChoice

    @property
    def template_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` variable of the template: OpenAI's shape, every tool."""
        return [{"type": "function", "function": f} for f in self.choice.tools]

    def grammar(self) -> str | None:
        """The grammar of a required call; None when the model may answer freely."""
        return self.format.grammar(self.choice) if self.choice.required else None


def native_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation for a template that renders tool calls itself: an assistant's calls
    checked (400 when malformed) and their arguments as objects, which the templates of
    these formats write with ``tojson``."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and calls is not None:
            message = {**message, "tool_calls": [
                {"id": call_id if isinstance(call_id, str) else new_call_id(),
                 "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, name, arguments in history_calls(calls)]}
        out.append(message)
    return out
