"""OpenAI's Responses API: POST /v1/responses (and /responses) and .../input_tokens.

The request is converted once into a chat request (``_responses_request``) and generated on
the chat pipeline; this module writes the Responses shapes from the answer: a ``response``
whose ``output`` holds a ``reasoning`` item (a model that thinks), a ``message`` item
(``output_text``) and ``function_call`` items, or, streamed, the named events
``response.created``, ``response.in_progress``, then per item ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` ... ``.done``,
``response.content_part.done``, ``response.output_item.done``
(``response.reasoning_text.delta`` / ``.done`` for reasoning,
``response.function_call_arguments.delta`` / ``.done`` for a call), then
``response.completed``, each with the ``sequence_number`` and indices the official client
tracks.  An answer cut by ``max_output_tokens`` has OpenAI's ``status: "incomplete"``
and ``incomplete_details`` (llama-server calls it completed); streamed, it still ends with
``response.completed``, the event llama-server's clients and the client's stream helper wait
for, rather than OpenAI's ``response.incomplete``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response

from ._chat import ChatRequest, count_chat_tokens
from ._chat_answer import CONTENT, REASONING, TOOL_CALL
from ._chat_bridge import (CLOSE, DELTA, OPEN, Blocks, ChatAnswer, ChatRun, Step, api_id,
                           sse_named, start_chat)
from ._context import ApiContext, json_response
from ._errors import to_api_error
from ._intake import read_model
from ._llama_shapes import timings
from ._openai import usage as chat_usage
from ._responses_request import ResponsesRequest, to_chat
from ._streaming import sse_response

# A comment line: every SSE client skips it (llama-server's ping for this API).
_PING = b":\n\n"


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    async def responses() -> Response:
        req = await read_model(ctx, ResponsesRequest, check=ctx.limits.check_input)
        chat = to_chat(req)
        run = await start_chat(ctx, chat)
        shape = _Shape(req, chat, req.model or ctx.model_id)
        if req.stream:
            return sse_response(_stream(run, shape))
        answer = await run.answer()
        return json_response(shape.response(answer, shape.output(answer)))

    async def input_tokens() -> Response:
        req = await read_model(ctx, ResponsesRequest, check=ctx.limits.check_input)
        count = await count_chat_tokens(ctx, to_chat(req))
        return json_response({"object": "response.input_tokens", "input_tokens": count})

    for prefix in ("/v1", ""):
        name = prefix.strip("/") or "bare"
        bp.add_url_rule(f"{prefix}/responses", f"{name}_responses", responses,
                        methods=["POST"])
        bp.add_url_rule(f"{prefix}/responses/input_tokens", f"{name}_responses_input_tokens",
                        input_tokens, methods=["POST"])


def _usage(answer: ChatAnswer) -> dict[str, Any]:
    counts = chat_usage([answer.final])
    return {"input_tokens": counts["prompt_tokens"],
            "input_tokens_details": counts["prompt_tokens_details"],
            "output_tokens": counts["completion_tokens"],
            "total_tokens": counts["total_tokens"]}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [] if text is None else [_text_part(text)]}


def _reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content,
            "encrypted_content": "", "status": status}


def _call_item(call: dict[str, Any], status: str, arguments: str | None = None
               ) -> dict[str, Any]:
    call_id = call["id"]
    return {"type": "function_call", "id": "fc_" + call_id.removeprefix("call_"),
            "call_id": call_id, "name": call["function"]["name"],
            "arguments": call["function"]["arguments"] if arguments is None else arguments,
            "status": status}


class _Shape:
    """The id and echoed settings of one response, and its objects."""

    def __init__(self, req: ResponsesRequest, chat: ChatRequest, model: str) -> None:
        self.id = api_id("resp")
        self.created = int(time.time())
        self.req, self.chat, self.model = req, chat, model

    def output(self, answer: ChatAnswer) -> list[dict[str, Any]]:
        """The output items: the reasoning, the message (always, unless the answer is tool
        calls), then the calls."""
        items = []
        if answer.reasoning:
            items.append(_reasoning_item(api_id("rs"), answer.reasoning, "completed"))
        if answer.text or not answer.calls:
            items.append(_message_item(api_id("msg"), answer.text,
                                       "incomplete" if answer.cut else "completed"))
        items.extend(_call_item(call, "completed") for call in answer.calls)
        return items

    def response(self, answer: ChatAnswer | None, output: list[dict[str, Any]]
                 ) -> dict[str, Any]:
        """The response object; without an answer, the one still in progress."""
        req = self.req
        status = "in_progress"
        if answer is not None:
            status = "incomplete" if answer.cut and not answer.calls else "completed"
        fmt = req.text.format if req.text is not None and req.text.format else {"type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete"
                                   else None),
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "model": self.model, "output": output,
            "parallel_tool_calls": bool(self.chat.parallel_tool_calls),
            "previous_response_id": None,
            "reasoning": {"effort": self.chat.reasoning_effort, "summary": None},
            "store": False, "temperature": req.temperature, "text": {"format": fmt},
            "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
            "tools": req.tools or [], "top_p": req.top_p,
            "truncation": req.truncation or "disabled",
            "usage": _usage(answer) if answer is not None else None,
            "user": req.user, "metadata": req.metadata or {},
        }


class _Events:
    """Named events numbered in order (the client checks ``sequence_number``)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.count, **fields}
        self.count += 1
        return sse_named(kind, payload)


class _StreamedItems:
    """A streamed response's output items, as the blocks of its answer open, grow and close;
    ``done`` holds the finished items, the response's ``output``."""

    def __init__(self, ev: _Events) -> None:
        self.ev = ev
        self.done: list[dict[str, Any]] = []
        self.cut = False   # the answer was cut short: its message is incomplete
        self._item: dict[str, Any] = {}
        self._text: list[str] = []
        self._call: dict[str, Any] = {}

    def events(self, steps: list[Step]) -> list[bytes]:
        return [event for step in steps for event in self._step(*step)]

    def _step(self, what: str, index: int, kind: str, value: Any) -> list[bytes]:
        ev = self.ev
        if what == OPEN:
            self._text = []
            if kind == TOOL_CALL:
                self._item = _call_item(value, "in_progress", arguments="")
            elif kind == REASONING:
                self._item = _reasoning_item(api_id("rs"), None, "in_progress")
            else:
                self._item = _message_item(api_id("msg"), None, "in_progress")
            opened = [ev("response.output_item.added", output_index=index, item=self._item)]
            if kind == CONTENT:
                opened.append(ev("response.content_part.added", item_id=self._item["id"],
                                 output_index=index, content_index=0, part=_text_part("")))
            return opened
        where = {"item_id": self._item["id"], "output_index": index}
        if what == DELTA and kind == TOOL_CALL:
            self._call = value
            return [ev("response.function_call_arguments.delta", **where,
                       delta=value["function"]["arguments"])]
        if what == DELTA:
            self._text.append(value)
            if kind == REASONING:
                return [ev("response.reasoning_text.delta", **where, content_index=0,
                           delta=value)]
            return [ev("response.output_text.delta", **where, content_index=0, delta=value,
                       logprobs=[])]
        return self._close(index, kind, where)

    def _close(self, index: int, kind: str, where: dict[str, Any]) -> list[bytes]:
        ev, text = self.ev, "".join(self._text)
        if kind == TOOL_CALL:
            item = _call_item(self._call, "completed")
            closing = [ev("response.function_call_arguments.done", **where, name=item["name"],
                          arguments=item["arguments"])]
        elif kind == REASONING:
            item = _reasoning_item(where["item_id"], text, "completed")
            closing = [ev("response.reasoning_text.done", **where, content_index=0, text=text)]
        else:
            item = _message_item(where["item_id"], text,
                                 "incomplete" if self.cut else "completed")
            closing = [ev("response.output_text.done", **where, content_index=0, text=text,
                          logprobs=[]),
                       ev("response.content_part.done", **where, content_index=0,
                          part=item["content"][0])]
        self.done.append(item)
        return closing + [ev("response.output_item.done", output_index=index, item=item)]

    def answered(self) -> bool:
        """Whether a message or a call went out (else an empty message is still owed)."""
        return any(item["type"] != "reasoning" for item in self.done)


async def _stream(run: ChatRun, shape: _Shape) -> AsyncIterator[bytes]:
    ev = _Events()
    try:
        progress = shape.response(None, [])
        yield ev("response.created", response=progress)
        yield ev("response.in_progress", response=progress)
        blocks, items = Blocks(), _StreamedItems(ev)
        async for part in run.parts():
            if part is None:
                yield _PING
                continue
            for event in items.events(blocks.feed(part)):
                yield event
        answer = run.result
        assert answer is not None  # the parts end with the answer or raise
        items.cut = answer.cut
        closing = blocks.close()
        if not items.answered() and not any(step[2] == CONTENT for step in closing):
            n = len(items.done) + len(closing)  # no text at all: an empty message, as whole
            closing += [(OPEN, n, CONTENT, ""), (CLOSE, n, CONTENT, None)]
        for event in items.events(closing):
            yield event
        # "response.completed" even for an answer cut short, whose status says "incomplete":
        # llama-server's clients (and the official client's stream helper) wait for this event
        yield ev("response.completed", response=shape.response(answer, items.done),
                 timings=timings(answer.final.timings))
    except Exception as exc:  # after the 200: an error event the client raises from
        error = to_api_error(exc).body()["error"]
        yield ev("error", code=error["type"], message=error["message"], param=None,
                 error=error)
