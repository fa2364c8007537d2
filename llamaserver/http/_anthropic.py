"""Anthropic's Messages API: POST /v1/messages and POST /v1/messages/count_tokens.

The request is converted once into a chat request (``_anthropic_request``) and generated on
the chat pipeline; this module writes Anthropic's shapes from the answer: a ``message`` with
``thinking``, ``text`` and ``tool_use`` content blocks, or, streamed, the named events
``message_start``, ``content_block_start`` / ``_delta`` (``thinking_delta``, ``text_delta``,
``input_json_delta``) / ``_stop``, ``message_delta`` (stop reason, usage), ``message_stop``,
and ``ping`` while nothing else goes out.  Errors keep llama-server's error shape;
Anthropic's clients pick their exception by status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response

from ..engine import FinalEvent
from ._anthropic_request import MessagesRequest, to_chat
from ._chat import count_chat_tokens
from ._chat_answer import CONTENT, REASONING
from ._chat_bridge import (CLOSE, OPEN, Blocks, ChatAnswer, ChatRun, Step, api_id,
                           sse_named, start_chat)
from ._context import ApiContext, json_response
from ._errors import to_api_error
from ._intake import read_model
from ._streaming import sse_response

_PING = sse_named("ping", {"type": "ping"})


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.post("/v1/messages")
    async def anthropic_messages() -> Response:
        req = await read_model(ctx, MessagesRequest, check=ctx.limits.check_chat)
        run = await start_chat(ctx, to_chat(req))
        head = {"id": api_id("msg"), "type": "message", "role": "assistant",
                "model": req.model or ctx.model_id}
        if req.stream:
            return sse_response(_stream(run, head))
        answer = await run.answer()
        reason, sequence = stop_reason(answer)
        return json_response({**head, "content": content_blocks(answer), "stop_reason": reason,
                              "stop_sequence": sequence, "usage": usage(answer.final)})

    @bp.post("/v1/messages/count_tokens")
    async def anthropic_count_tokens() -> Response:
        req = await read_model(ctx, MessagesRequest, check=ctx.limits.check_chat)
        return json_response({"input_tokens": await count_chat_tokens(ctx, to_chat(req))})


def stop_reason(answer: ChatAnswer) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) in Anthropic's terms."""
    if answer.finish_reason == "tool_calls":
        return "tool_use", None
    if answer.final.stopped_word:
        return "stop_sequence", answer.final.stopping_word
    if answer.cut:
        return "max_tokens", None
    return "end_turn", None


def usage(final: FinalEvent) -> dict[str, int]:
    """Anthropic counts prompt tokens read from the cache apart from ``input_tokens``."""
    cached = min(final.timings.cache_n, final.tokens_evaluated)
    return {"input_tokens": final.tokens_evaluated - cached, "cache_read_input_tokens": cached,
            "output_tokens": final.tokens_predicted}


def _input(call: dict[str, Any]) -> dict[str, Any]:
    try:
        arguments = json.loads(call["function"]["arguments"])
    except ValueError:  # a native call cut short
        return {}
    return arguments if isinstance(arguments, dict) else {}


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
            "input": {}}


def content_blocks(answer: ChatAnswer) -> list[dict[str, Any]]:
    """Thinking first (its signature empty: nothing signs a local model's), then text, then
    the tool calls, as llama-server orders them."""
    blocks: list[dict[str, Any]] = []
    if answer.reasoning:
        blocks.append({"type": "thinking", "thinking": answer.reasoning, "signature": ""})
    if answer.text:
        blocks.append({"type": "text", "text": answer.text})
    blocks.extend({**_tool_use(call), "input": _input(call)} for call in answer.calls)
    return blocks


def _event(kind: str, **fields: Any) -> bytes:
    return sse_named(kind, {"type": kind, **fields})


def _block_events(steps: list[Step]) -> list[bytes]:
    return [event for step in steps for event in _step_events(step)]


def _step_events(step: Step) -> list[bytes]:
    """The events of one step of a block: its start, a delta, or its end."""
    what, index, kind, value = step
    if what == OPEN:
        start = ({"type": "thinking", "thinking": "", "signature": ""} if kind == REASONING
                 else {"type": "text", "text": ""} if kind == CONTENT else _tool_use(value))
        return [_event("content_block_start", index=index, content_block=start)]
    if what == CLOSE:
        # Anthropic's clients expect a signature before a thinking block ends
        signed = ([_event("content_block_delta", index=index,
                          delta={"type": "signature_delta", "signature": ""})]
                  if kind == REASONING else [])
        return signed + [_event("content_block_stop", index=index)]
    delta = ({"type": "thinking_delta", "thinking": value} if kind == REASONING
             else {"type": "text_delta", "text": value} if kind == CONTENT
             else {"type": "input_json_delta", "partial_json": value["function"]["arguments"]})
    return [_event("content_block_delta", index=index, delta=delta)]


async def _stream(run: ChatRun, head: dict[str, Any]) -> AsyncIterator[bytes]:
    try:
        # The cached part of the prompt is known at the end: message_delta's usage (totals,
        # by Anthropic's rule) splits input_tokens from cache_read_input_tokens.
        yield _event("message_start", message={
            **head, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": run.n_prompt, "output_tokens": 0}})
        blocks = Blocks()
        async for part in run.parts():
            if part is None:
                yield _PING
                continue
            for event in _block_events(blocks.feed(part)):
                yield event
        for event in _block_events(blocks.close()):
            yield event
        answer = run.result
        assert answer is not None  # the parts end with the answer or raise
        reason, sequence = stop_reason(answer)
        yield _event("message_delta", delta={"stop_reason": reason, "stop_sequence": sequence},
                     usage=usage(answer.final))
        yield _event("message_stop")
    except Exception as exc:  # after the 200: an error event the client raises from
        error = to_api_error(exc)
        yield _event("error", error=error.body()["error"])
