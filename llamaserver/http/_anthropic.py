"""Anthropic's Messages API: POST /v1/messages and POST /v1/messages/count_tokens.

The request is converted once into a chat request (``_anthropic_request``) and generated on
the chat pipeline; this module writes Anthropic's shapes from the answer: a ``message`` with
``text`` and ``tool_use`` content blocks, or, streamed, the named events ``message_start``,
``content_block_start`` / ``_delta`` (``text_delta``, ``input_json_delta``) / ``_stop``,
``message_delta`` (stop reason, usage), ``message_stop``, and ``ping`` while nothing else goes
out.  Errors keep llama-server's error shape; Anthropic's clients pick their exception by
status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, request

from ..engine import FinalEvent
from ._anthropic_request import MessagesRequest, to_chat
from ._body import read_json_object, validate
from ._chat_bridge import ChatAnswer, ChatRun, api_id, count_chat_tokens, sse_named, start_chat
from ._context import ApiContext, json_response
from ._errors import to_api_error
from ._streaming import sse_response

_PING = sse_named("ping", {"type": "ping"})


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.post("/v1/messages")
    async def anthropic_messages() -> Response:
        req = validate(MessagesRequest, await read_json_object(request))
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
        req = validate(MessagesRequest, await read_json_object(request))
        return json_response({"input_tokens": await count_chat_tokens(ctx, to_chat(req))})


def stop_reason(answer: ChatAnswer) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) in Anthropic's terms."""
    if answer.calls:
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


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    arguments = json.loads(call["function"]["arguments"])  # the plan wrote it as JSON
    return {"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
            "input": arguments if isinstance(arguments, dict) else {}}


def content_blocks(answer: ChatAnswer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if answer.text:
        blocks.append({"type": "text", "text": answer.text})
    blocks.extend(_tool_use(call) for call in answer.calls)
    return blocks


def _event(kind: str, **fields: Any) -> bytes:
    return sse_named(kind, {"type": kind, **fields})


def _text_delta(piece: str) -> bytes:
    return _event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})


def _whole_block(index: int, block: dict[str, Any]) -> list[bytes]:
    """A block that is complete before it is sent (an answer read through a tool plan)."""
    if block["type"] == "text":
        start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
    else:
        start = {**block, "input": {}}
        delta = {"type": "input_json_delta",
                 "partial_json": json.dumps(block["input"], ensure_ascii=False)}
    return [_event("content_block_start", index=index, content_block=start),
            _event("content_block_delta", index=index, delta=delta),
            _event("content_block_stop", index=index)]


async def _stream(run: ChatRun, head: dict[str, Any]) -> AsyncIterator[bytes]:
    try:
        # The cached part of the prompt is known at the end: message_delta's usage (totals,
        # by Anthropic's rule) splits input_tokens from cache_read_input_tokens.
        yield _event("message_start", message={
            **head, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": run.n_prompt, "output_tokens": 0}})
        text_block = run.plan is None  # plain text streams into block 0 as it comes
        if text_block:
            yield _event("content_block_start", index=0,
                         content_block={"type": "text", "text": ""})
        async for frame in run.frames(_text_delta, _PING):
            yield frame
        answer = run.result
        assert answer is not None  # the stream ends with the answer or raises
        if text_block:
            yield _event("content_block_stop", index=0)
        else:
            for index, block in enumerate(content_blocks(answer)):
                for event in _whole_block(index, block):
                    yield event
        reason, sequence = stop_reason(answer)
        yield _event("message_delta", delta={"stop_reason": reason, "stop_sequence": sequence},
                     usage=usage(answer.final))
        yield _event("message_stop")
    except Exception as exc:  # after the 200: an error event the client raises from
        error = to_api_error(exc)
        yield _event("error", error=error.body()["error"])
