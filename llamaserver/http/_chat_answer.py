"""Reading a chat answer: reasoning, content and tool calls, streamed or whole.

An :class:`AnswerPlan` says how the answers of one chat request are read (decided while the
prompt was rendered); each choice gets an :class:`AnswerReader`, fed the generated text
piece by piece.  It gives typed parts, ``(kind, value)`` with kind ``"reasoning"``,
``"content"`` or ``"tool_call"`` (OpenAI's call shape), and at the end an :class:`Answer`.
Each endpoint formats the parts its own way (OpenAI's deltas in ``_chat``).

The text goes through the reasoning splitter first (when the template thinks and
``reasoning_format`` is not ``none``), then the content through the tool-call reader of the
model's format, or, for the generic JSON form, whole at the end (its JSON is only readable
when complete).  With ``deepseek-legacy`` the content keeps the thinking inline, tags and
all (streamed like that, as upstream), and the whole message also has the reasoning apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine import FinalEvent
from ._chat_prompt import ChatPrompt
from ._openai import finish_reason
from ._reasoning import ThinkTags
from ._think_split import CONTENT, REASONING, ReasoningSplitter
from ._tool_formats import NativeTools
from ._tool_parse import TOOL_CALL, CallReader, Part
from ._tools import ToolPlan

__all__ = ["Answer", "AnswerPlan", "AnswerReader", "Part", "REASONING", "CONTENT", "TOOL_CALL"]


@dataclass(frozen=True)
class Answer:
    reasoning: str | None
    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str


@dataclass(frozen=True)
class AnswerPlan:
    prefill: str = ""                   # continued assistant text: the answer starts with it
    tags: ThinkTags | None = None       # split reasoning off with these (None: no splitting)
    opened: bool = False                # the prompt ends inside a thinking block
    legacy: bool = False                # deepseek-legacy: thinking stays in the content too
    generic: ToolPlan | None = None     # tool calls in the generic JSON form
    native: NativeTools | None = None   # tool calls in the model's own format

    @classmethod
    def of(cls, prompt: ChatPrompt, reasoning_format: str, parse: bool = True) -> AnswerPlan:
        """How to read the answers to ``prompt``; ``parse`` off (``--skip-chat-parsing``):
        everything is content."""
        return cls(prefill=prompt.prefill,
                   tags=prompt.tags if parse and reasoning_format != "none" else None,
                   opened=prompt.opened, legacy=reasoning_format == "deepseek-legacy",
                   generic=prompt.tools if parse else None,
                   native=prompt.native if parse else None)

    def reader(self) -> AnswerReader:
        return AnswerReader(self)

    def read(self, final: FinalEvent) -> Answer:
        """A whole answer at once (not streamed)."""
        reader = AnswerReader(self)
        reader.start()
        reader.feed(final.content)
        return reader.finish(final)[1]

    @property
    def plain(self) -> bool:
        """Nothing to read: the text is the content."""
        return self.tags is None and self.generic is None and self.native is None


class AnswerReader:
    """One choice's answer; :meth:`start` first, then :meth:`feed`, then :meth:`finish`."""

    def __init__(self, plan: AnswerPlan) -> None:
        self._plan = plan
        self._split = ReasoningSplitter(plan.tags, plan.opened) if plan.tags else None
        self._calls_reader: CallReader | None = plan.native.format.reader() if plan.native else None
        self._reasoning: list[str] = []
        self._content: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._generic_text: list[str] = []

    def start(self) -> list[Part]:
        """The parts of the continued text (the generic JSON form starts afresh)."""
        plan = self._plan
        opening = plan.tags.start if plan.legacy and plan.opened and plan.tags else ""
        if plan.generic is not None or not (opening or plan.prefill):
            return []
        return self._route(plan.prefill, opening + plan.prefill)

    def feed(self, text: str) -> list[Part]:
        if self._plan.plain:  # as it came, empty pieces too (they may carry logprobs)
            self._content.append(text)
            return [(CONTENT, text)]
        return self._route(text, text)

    def finish(self, final: FinalEvent) -> tuple[list[Part], Answer]:
        reason = finish_reason(final)
        cut = reason == "length"
        out: list[Part] = []
        if self._split is not None:
            self._take(self._split.finish(cut), out)
        if self._calls_reader is not None:
            self._record(self._calls_reader.finish(cut), out)
        generic = self._plan.generic
        if generic is None:
            return out, self._answer("".join(self._content), reason, cut)
        # the JSON answer is read whole: its text, or its calls (content None then)
        content, calls = generic.read("".join(self._generic_text), cut)
        self._record(([(CONTENT, content)] if content else [])
                     + [(TOOL_CALL, call) for call in calls], out)
        return out, self._answer(content, reason, cut=False)  # its calls are whole

    # ---- routing ----------------------------------------------------------------------
    def _route(self, text: str, raw: str) -> list[Part]:
        out: list[Part] = []
        parts = self._split.feed(text) if self._split is not None else [(CONTENT, text)]
        if self._plan.legacy:  # the raw text is the content; the reasoning is only kept
            self._reasoning += [value for kind, value in parts if kind == REASONING]
            self._to_content(raw, out)
        else:
            self._take(parts, out)
        return out

    def _take(self, parts: list[Part], out: list[Part]) -> None:
        for kind, value in parts:
            if kind == REASONING:
                self._reasoning.append(value)
                if not self._plan.legacy:
                    out.append((kind, value))
            elif not self._plan.legacy:
                self._to_content(value, out)

    def _to_content(self, text: str, out: list[Part]) -> None:
        if self._plan.generic is not None:
            self._generic_text.append(text)
        elif self._calls_reader is not None:
            self._record(self._calls_reader.feed(text), out)
        else:
            self._record([(CONTENT, text)] if text else [], out)

    def _record(self, parts: list[Part], out: list[Part]) -> None:
        for kind, value in parts:
            (self._calls if kind == TOOL_CALL else self._content).append(value)
            out.append((kind, value))

    def _answer(self, content: str | None, reason: str, cut: bool) -> Answer:
        reasoning = "".join(self._reasoning) if self._reasoning else None
        calls = self._calls
        if calls:
            content = (content or "").strip() or None
            reason = reason if cut else "tool_calls"
        return Answer(reasoning, content, calls, reason)
