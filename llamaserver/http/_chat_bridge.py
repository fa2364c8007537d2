"""What the endpoints that speak other vendors' dialects share (Anthropic's /v1/messages,
OpenAI's /v1/responses).

Each of them validates its own request and converts it once into a :class:`ChatRequest`;
from there the chat pipeline does the work (template, tool plan, grammar, sampler chains) on
the one generation path.  This module runs such a request and hands the endpoint what it
needs to write its own shape: text as it comes, then a :class:`ChatAnswer` (text or tool
calls, read with the same :class:`ToolPlan`), with ``None`` marking a keep-alive moment.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from ..engine import FinalEvent, TokenEvent
from ._chat import ChatRequest, chat_prompt, prepare_chat
# chat completions' own reading of an answer (tool plan, prefill): every dialect reads alike
from ._chat import _message as chat_message
from ._context import ApiContext, dumps
from ._errors import invalid
from ._openai import finish_reason
from ._resolve import prompt_tokens
from ._streaming import EventSource, open_all
from ._tools import ToolPlan

T = TypeVar("T")

# Seconds without an event before a stream says it is still alive: llama-server's default
# --sse-ping-interval.  A tool call is sent whole once its JSON is complete, so such a stream
# can be silent for as long as the model writes.
PING_INTERVAL = 30.0


@dataclass(frozen=True)
class ChatAnswer:
    """A finished answer: its words and/or its tool calls (OpenAI's ``tool_calls`` shape:
    ``{"id", "type": "function", "function": {"name", "arguments": JSON text}}``)."""

    text: str
    calls: list[dict[str, Any]]
    final: FinalEvent

    @property
    def cut(self) -> bool:
        """Stopped by the token limit (or a context that ran out), not by the model."""
        return finish_reason(self.final) == "length"


def read_answer(final: FinalEvent, plan: ToolPlan | None, prefill: str) -> ChatAnswer:
    """The answer as chat completions read it (tool plan, continued assistant message)."""
    message, _finish = chat_message(final, plan, prefill)
    return ChatAnswer(message["content"] or "", message.get("tool_calls", []), final)


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
    plan: ToolPlan | None
    prefill: str   # a continued assistant message's text: the answer starts with it
    result: ChatAnswer | None = None   # set once :meth:`frames` has streamed the answer

    @property
    def n_prompt(self) -> int:
        """Prompt tokens of the request, known before any is evaluated."""
        return len(self.source.prepared.request.tokens)

    async def answer(self) -> ChatAnswer:
        outcome = await self.source.drain()
        return read_answer(outcome.final, self.plan, self.prefill)

    async def stream(self, ping_interval: float = PING_INTERVAL
                     ) -> AsyncIterator[str | ChatAnswer | None]:
        """Text pieces as they come (none while a tool plan's JSON answer is written), None
        after ``ping_interval`` seconds of silence, and the :class:`ChatAnswer` last."""
        try:
            if self.prefill and self.plan is None:
                yield self.prefill
            async with aclosing(with_pings(self.source.events(), ping_interval)) as events:
                async for event in events:
                    if event is None:
                        yield None
                    elif isinstance(event, FinalEvent):
                        yield read_answer(event, self.plan, self.prefill)
                        return
                    elif isinstance(event, TokenEvent) and event.text and self.plan is None:
                        yield event.text
        finally:
            await self.source.close()

    async def frames(self, text: Callable[[str], bytes], ping: bytes) -> AsyncIterator[bytes]:
        """The SSE frames of the text as it comes (``text(piece)``) and of keep-alive pings;
        then :attr:`result` holds the answer.  A client that leaves frees the slot."""
        async with aclosing(self.stream()) as items:
            async for item in items:
                if item is None:
                    yield ping
                elif isinstance(item, str):
                    yield text(item)
                else:
                    self.result = item


async def start_chat(ctx: ApiContext, chat: ChatRequest) -> ChatRun:
    """Prepare (off the event loop) and submit a converted chat request."""
    engine = ctx.ready_engine()
    prepared, plan, prefill = await ctx.run_blocking(prepare_chat, ctx, engine, chat)
    (source,) = await open_all(ctx, prepared)
    return ChatRun(source, plan, prefill)


async def count_chat_tokens(ctx: ApiContext, chat: ChatRequest) -> int:
    """The number of tokens the prompt of ``chat`` would have: the same template, tool note
    and tokenizer as a generation, without running one."""
    engine = ctx.ready_engine()

    def count() -> int:
        prompt, _grammar, _plan, _prefill = chat_prompt(ctx, engine, chat)
        read = prompt_tokens(engine, prompt.value, prompt.media)
        if read.owner is not None:
            read.owner.close()
        return len(read.tokens)

    return await ctx.run_blocking(count)


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
