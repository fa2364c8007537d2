"""Reading tool calls in a model's own format out of its streamed content.

A reader is fed the content (what is left after the reasoning) piece by piece and gives
``("content", text)`` and ``("tool_call", call)`` parts, ``call`` in OpenAI's shape.  Text
before a call goes out as content as it comes, except what may be the beginning of a call's
marker (held back until the next piece tells); a call goes out once it is complete.  At the
end, a call cut short by the token limit is dropped whole (the client gets ``finish_reason:
"length"``, never half a wrapper as content); other unreadable text is kept as content, as
the model wrote it.

The three sections (each a marker, then JSON):

- ``<tool_call>{...}</tool_call>`` (Hermes 2 Pro, Qwen 2.5+), once per call;
- ``[TOOL_CALLS][{...}, ...]`` (Mistral Nemo), one array of calls;
- ``<|python_tag|>{...}`` or a JSON object at the very start (Llama 3.x), objects up to the
  end, separated by ``;`` or whitespace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ._think_split import CONTENT, partial_suffix

TOOL_CALL = "tool_call"
Part = tuple[str, Any]

_OUT, _IN, _PLAIN = range(3)
_DECODER = json.JSONDecoder()


class _Incomplete(Exception):
    """The section needs more text."""


class _Malformed(Exception):
    """The section is not a call: it is content."""


class CallReader:
    """The reading loop; a subclass says what a call section is (:meth:`_section`)."""

    opens: tuple[str, ...] = ()   # markers that begin a section
    json_at_start = False         # a JSON object at the beginning begins one too

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._state = _OUT
        self._held = ""          # text not yet given out (a section: from its marker on)
        self._done = 0           # how much of the held section was given out as calls
        self._started = False    # anything but whitespace came
        self._gap = False        # after a call: the whitespace that follows is dropped

    def feed(self, text: str) -> list[Part]:
        out: list[Part] = []
        self._held += text
        while self._held and self._step(out, final=False):
            pass
        return out

    def finish(self, cut: bool) -> list[Part]:
        out: list[Part] = []
        while self._held and self._step(out, final=True):
            pass
        held, self._held = self._held, ""
        if self._state == _IN and not cut:
            self._content(out, held[self._done:])
        elif self._state != _IN and not (cut and self._marker_prefix(held)):
            self._content(out, held)
        return out

    # ---- the loop ---------------------------------------------------------------------
    def _step(self, out: list[Part], final: bool) -> bool:
        """One move; False when it needs more text."""
        if self._state == _PLAIN:
            self._content(out, self._held)
            self._held = ""
            return False
        if self._state == _OUT:
            return self._outside(out)
        try:
            end = self._section(out, final)
        except _Incomplete:
            return False
        except _Malformed as exc:
            rest = max(exc.args[0], self._done) if exc.args else len(self._held)
            self._content(out, self._held[self._done:rest])
            self._held, self._done = self._held[rest:], 0
            self._state = _OUT if exc.args else _PLAIN
            return True
        self._held, self._done, self._state, self._gap = self._held[end:], 0, _OUT, True
        return True

    def _outside(self, out: list[Part]) -> bool:
        held = self._held
        if self._gap:
            held = self._held = held.lstrip()
            if not held:
                return False
            self._gap = False
        found = [held.find(m) for m in self.opens if m in held]
        if not self._started and self.json_at_start and held.lstrip().startswith("{"):
            found.append(len(held) - len(held.lstrip()))
        if found:
            at = min(found)
            if held[:at].strip():  # whitespace before a call is no content
                self._content(out, held[:at])
            self._held, self._done, self._state = held[at:], 0, _IN
            self._started = True
            return True
        if not self._started and self.json_at_start and not held.strip():
            return False  # only whitespace so far: a JSON call may still begin
        keep = self._marker_prefix(held)  # at the end, finish() decides what it was
        self._content(out, held[:len(held) - keep])
        self._held = held[len(held) - keep:]
        return False

    def _marker_prefix(self, text: str) -> int:
        return max((partial_suffix(text, m) for m in self.opens), default=0)

    def _content(self, out: list[Part], text: str) -> None:
        if text:
            if text.strip():
                self._started = True
            out.append((CONTENT, text))

    # ---- sections ---------------------------------------------------------------------
    def _section(self, out: list[Part], final: bool) -> int:
        """Read the held section from ``self._done``: calls go to ``out`` (and ``_done``
        moves past them); returns where the section ends.  Raises ``_Incomplete`` or
        ``_Malformed`` (with where the content ends, or none: the rest is content)."""
        raise NotImplementedError

    def _object(self, at: int, out: list[Part]) -> int:
        """Decode the call object at ``at`` into ``out``; where it ends."""
        try:
            value, end = _DECODER.raw_decode(self._held, at)
        except ValueError:
            raise _Incomplete from None
        call = self._call(value)
        if call is None:
            raise _Malformed()
        out.append((TOOL_CALL, call))
        self._done = end
        return end

    def _call(self, value: Any) -> dict[str, Any] | None:
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return None
        args = value.get("arguments", value.get("parameters", {}))
        if not isinstance(args, (dict, str)):
            return None
        call_id = value.get("id")
        return {"id": call_id if isinstance(call_id, str) and call_id else self._new_id(),
                "type": "function",
                "function": {"name": value["name"],
                             "arguments": args if isinstance(args, str)
                             else json.dumps(args, ensure_ascii=False)}}

    def _skip(self, at: int, chars: str = " \t\r\n") -> int:
        held = self._held
        while at < len(held) and held[at] in chars:
            at += 1
        if at == len(held):
            raise _Incomplete
        return at


class HermesReader(CallReader):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, once per call."""

    opens = ("<tool_call>",)
    close = "</tool_call>"

    def _section(self, out: list[Part], final: bool) -> int:
        held = self._held
        close = held.find(self.close)
        if not self._done:
            try:
                self._object(self._skip(len(self.opens[0])), out)
            except _Incomplete:
                if close >= 0:
                    raise _Malformed(close + len(self.close)) from None
                raise
        try:
            end = self._skip(self._done)
        except _Incomplete:
            if final:  # the model ended without the closing tag: the call is whole
                return len(held)
            raise
        if held.startswith(self.close, end):
            return end + len(self.close)
        if self.close.startswith(held[end:]):
            raise _Incomplete
        raise _Malformed(close + len(self.close) if close >= 0 else len(held))


class MistralReader(CallReader):
    """``[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...]``."""

    opens = ("[TOOL_CALLS]",)

    def _section(self, out: list[Part], final: bool) -> int:
        held = self._held
        if not self._done:
            at = self._skip(len(self.opens[0]))
            if held[at] != "[":
                raise _Malformed()
            at = self._skip(at + 1)
            if held[at] == "]":
                return at + 1
            self._object(at, out)
        while True:
            at = self._skip(self._done)
            if held[at] == "]":
                return at + 1
            if held[at] != ",":
                raise _Malformed()
            self._object(self._skip(at + 1), out)


class Llama3Reader(CallReader):
    """``{"name": ..., "parameters": {...}}`` at the start or after ``<|python_tag|>``;
    several separated by ``;`` or whitespace, up to the end."""

    opens = ("<|python_tag|>",)
    json_at_start = True

    def _section(self, out: list[Part], final: bool) -> int:
        held = self._held
        start = len(self.opens[0]) if held.startswith(self.opens[0]) else 0
        at = self._done or start
        while True:
            try:
                at = self._skip(at, " \t\r\n;")
            except _Incomplete:
                if final and self._done:
                    return len(held)
                raise
            at = self._object(at, out)
