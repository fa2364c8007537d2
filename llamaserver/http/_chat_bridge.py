"""What the endpoints that speak other vendors' dialects share (Anthropic's /v1/messages,
OpenAI's /v1/responses).

Each of them validates its own request and converts it once into a :class:`ChatRequest`;
from there the chat pipeline does the work (template, tools, thinking, grammar, sampler
chains) on the one generation path, and the chat's :class:`AnswerReader` reads the answer
into parts: reasoning, content and tool calls.  This module runs such a request and hands the
endpoint the parts as they come, grouped into numbered blocks (:class:`Blocks`), then the
whole :class:`ChatAnswer`; each endpoint writes its own shape from them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from ..engine import FinalEvent, TokenEvent
from ._chat import ChatRequest, prepare_chat
from ._chat_answer import TOOL_CALL, Answer, AnswerPlan, Part
from ._context import ApiContext, dumps
from ._errors import invalid
from ._streaming import EventSource, open_all

T = TypeVar("T")

# Seconds without an event before a stream says it is still alive: llama-server's default
# --sse-ping-interval.  A generic tool call is sent whole once its JSON is complete, so such
# a stream can be silent for as long as the model writes.
PING_INTERVAL = 30.0

OPEN, DELTA, CLOSE = "open", "delta", "close"
Step = tuple[str, int, str, Any]   # (OPEN | DELTA | CLOSE, block index, part kind, value)


@dataclass(frozen=True)
class ChatAnswer:
    """A finished answer as the chat read it, and the engine's account of it."""

    reasoning: str | None
    text: str
    calls: list[dict[str, Any]]   # OpenAI's shape: {"id", "type", "function": {"name", ...}}
    finish_reason: str            # "stop", "length" or "tool_calls"
    final: FinalEvent

    @classmethod
    def of(cls, answer: Answer, final: FinalEvent) -> ChatAnswer:
        return cls(answer.reasoning, answer.content or "", answer.tool_calls,
                   answer.finish_reason, final)

    @property
    def cut(self) -> bool:
        """Stopped by the token limit (or a context that ran out), not by the model."""
        return self.finish_reason == "length"


class Blocks:
    """Parts grouped as both dialects number their output: consecutive reasoning (or content)
    parts make one block, each tool call is a block of its own."""

    def __init__(self) -> None:
        self._kind: str | None = None
        self._index = -1

    def feed(self, part: Part) -> list[Step]:
        kind, value = part
        steps = []
        if kind == TOOL_CALL or kind != self._kind:
            steps += self.close()
            self._index += 1
            self._kind = kind
            steps.append((OPEN, self._index, kind, value))
        steps.append((DELTA, self._index, kind, value))
        if kind == TOOL_CALL:
            steps += self.close()
        return steps

    def close(self) -> list[Step]:
        """Close the open block (at the end of the answer)."""
        if self._kind is None:
            return []
        step = (CLOSE, self._index, self._kind, None)
        self._kind = None
        return [step]


class ToolCallIds:
    """The tool calls a converted history holds: each id is used once, and a tool result must
    answer one of them (a 400 naming the field otherwise)."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def call(self, where: str, id_field: str, call_id: Any, name: Any,
             arguments: str) -> dict[str, Any]:
        """An earlier call, as the chat's ``tool_calls`` entry."""
        for key, value in ((id_field, call_id), ("name", name)):
            if not isinstance(value, str) or not value:
                raise invalid(f"'{where}.{key}' must be a non-empty string")
        if call_id in self._ids:
            raise invalid(f"'{where}.{id_field}': the id {call_id!r} is used twice")
        self._ids.add(call_id)
        return {"id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments}}

    def answered(self, where: str, id_field: str, call_id: Any, calls: str) -> str:
        """The id of the call a result answers (``calls`` says where calls come from)."""
        if not isinstance(call_id, str) or call_id not in self._ids:
            raise invalid(f"'{where}.{id_field}' must name {calls} (got {call_id!r})")
        return call_id


def api_id(prefix: str) -> str:
    """An id in the vendors' spelling (``msg_...``, ``resp_...``)."""
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class ChatRun:
    """A submitted chat request whose first event has arrived (so errors got their status)."""

    source: EventSource
    plan: AnswerPlan
    result: ChatAnswer | None = None   # set once :meth:`parts` has streamed the answer

    @property
    def n_prompt(self) -> int:
        """Prompt tokens of the request, known before any is evaluated."""
        return len(self.source.prepared.request.tokens)

    async def answer(self) -> ChatAnswer:
        outcome = await self.source.drain()
        return ChatAnswer.of(self.plan.read(outcome.final), outcome.final)

    async def parts(self, ping_interval: float = PING_INTERVAL
                    ) -> AsyncIterator[Part | None]:
        """The answer's parts as the chat's reader gives them (a continued message's text
        first), None after ``ping_interval`` seconds of silence; then :attr:`result` holds
        the whole answer.  A consumer that leaves frees the slot."""
        reader = self.plan.reader()
        try:
            for part in reader.start():
                yield part
            async with aclosing(with_pings(self.source.events(), ping_interval)) as events:
                async for event in events:
                    if event is None:
                        yield None
                    elif isinstance(event, FinalEvent):
                        parts, answer = reader.finish(event)
                        for part in _with_text(parts):
                            yield part
                        self.result = ChatAnswer.of(answer, event)
                        return
                    elif isinstance(event, TokenEvent):
                        for part in _with_text(reader.feed(event.text)):
                            yield part
        finally:
            await self.source.close()


def _with_text(parts: list[Part]) -> list[Part]:
    """Parts that say something (the reader also gives empty text, for logprobs' sake)."""
    return [part for part in parts if part[0] == TOOL_CALL or part[1]]


async def start_chat(ctx: ApiContext, chat: ChatRequest) -> ChatRun:
    """Prepare (off the event loop) and submit a converted chat request."""
    engine = ctx.ready_engine()
    prepared = await ctx.run_blocking(prepare_chat, ctx, engine, chat)
    (source,) = await open_all(ctx, prepared.prepared)
    return ChatRun(source, prepared.answer)


def sse_named(event: str, payload: Any) -> bytes:
    """A Server-Sent Event with its name: both dialects' clients dispatch on ``event:``."""
    return f"event: {event}\ndata: {dumps(payload)}\n\n".encode("utf-8")


async def with_pings(events: AsyncIterator[T], interval: float) -> AsyncIterator[T | None]:
    """``events``, with None after every ``interval`` seconds in which none came.

    The pending step runs as a task and is never cancelled by a timeout (that would end the
    underlying iterator); it is cancelled only when the consumer leaves.
    """
    iterator = aiter(events)
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
