"""OpenAI's Responses API: POST /v1/responses (and /responses) and .../input_tokens.

The request is converted once into a chat request (``_responses_request``) and generated on
the chat pipeline; this module writes the Responses shapes from the answer: a ``response``
whose ``output`` holds a ``message`` item (``output_text``) or ``function_call`` items, or,
streamed, the named events ``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` ... ``.done``, ``response.content_part.done``,
``response.output_item.done`` (``response.function_call_arguments.delta`` / ``.done`` for a
call), then ``response.completed``, each with the ``sequence_number`` and indices the official
client tracks.  An answer cut by ``max_output_tokens`` has OpenAI's ``status: "incomplete"``
and ``incomplete_details`` (llama-server calls it completed); streamed, it still ends with
``response.completed``, the event llama-server's clients and the client's stream helper wait
for, rather than OpenAI's ``response.incomplete``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, request

from ._body import read_json_object, validate
from ._chat import ChatRequest
from ._chat_bridge import ChatAnswer, ChatRun, api_id, count_chat_tokens, sse_named, start_chat
from ._context import ApiContext, json_response
from ._errors import to_api_error
from ._llama_shapes import timings
from ._openai import usage as chat_usage
from ._responses_request import ResponsesRequest, to_chat
from ._streaming import sse_response

# A comment line: every SSE client skips it (llama-server's ping for this API).
_PING = b":\n\n"


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    async def responses() -> Response:
        req = validate(ResponsesRequest, await read_json_object(request))
        chat = to_chat(req)
        run = await start_chat(ctx, chat)
        shape = _Shape(req, chat, req.model or ctx.model_id)
        if req.stream:
            return sse_response(_stream(run, shape))
        answer = await run.answer()
        return json_response(shape.response(answer, shape.output(answer)))

    async def input_tokens() -> Response:
        req = validate(ResponsesRequest, await read_json_object(request))
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
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counts["total_tokens"]}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class _Shape:
    """The ids and echoed settings of one response, and its objects."""

    def __init__(self, req: ResponsesRequest, chat: ChatRequest, model: str) -> None:
        self.id = api_id("resp")
        self.message_id = api_id("msg")
        self.created = int(time.time())
        self.req, self.chat, self.model = req, chat, model

    def output(self, answer: ChatAnswer) -> list[dict[str, Any]]:
        """The output items: the message (always, unless the answer is tool calls), then
        the calls."""
        items = []
        if answer.text or not answer.calls:
            items.append(self.message(answer.text, "incomplete" if answer.cut else "completed"))
        for call in answer.calls:
            call_id = call["id"]
            items.append({"type": "function_call", "id": "fc_" + call_id.removeprefix("call_"),
                          "call_id": call_id, "name": call["function"]["name"],
                          "arguments": call["function"]["arguments"], "status": "completed"})
        return items

    def message(self, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [_text_part(text)]
        return {"type": "message", "id": self.message_id, "status": status,
                "role": "assistant", "content": content}

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
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
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


def _open_message(ev: _Events, shape: _Shape, index: int) -> list[bytes]:
    where = {"item_id": shape.message_id, "output_index": index}
    return [ev("response.output_item.added", output_index=index,
               item=shape.message(None, "in_progress")),
            ev("response.content_part.added", **where, content_index=0, part=_text_part(""))]


def _text_delta(ev: _Events, shape: _Shape, index: int, text: str) -> bytes:
    return ev("response.output_text.delta", item_id=shape.message_id, output_index=index,
              content_index=0, delta=text, logprobs=[])


def _close_item(ev: _Events, index: int, item: dict[str, Any]) -> list[bytes]:
    where = {"item_id": item["id"], "output_index": index}
    events = []
    if item["type"] == "message":
        (part,) = item["content"]
        events += [ev("response.output_text.done", **where, content_index=0,
                      text=part["text"], logprobs=[]),
                   ev("response.content_part.done", **where, content_index=0, part=part)]
    else:
        events.append(ev("response.function_call_arguments.done", **where,
                         name=item["name"], arguments=item["arguments"]))
    return events + [ev("response.output_item.done", output_index=index, item=item)]


def _whole_item(ev: _Events, shape: _Shape, index: int, item: dict[str, Any]) -> list[bytes]:
    """An item that is complete before it is sent (an answer read through a tool plan)."""
    if item["type"] == "message":
        opening = _open_message(ev, shape, index)
        opening.append(_text_delta(ev, shape, index, item["content"][0]["text"]))
    else:
        where = {"item_id": item["id"], "output_index": index}
        opening = [ev("response.output_item.added", output_index=index,
                      item={**item, "arguments": "", "status": "in_progress"}),
                   ev("response.function_call_arguments.delta", **where,
                      delta=item["arguments"])]
    return opening + _close_item(ev, index, item)


async def _stream(run: ChatRun, shape: _Shape) -> AsyncIterator[bytes]:
    ev = _Events()
    try:
        progress = shape.response(None, [])
        yield ev("response.created", response=progress)
        yield ev("response.in_progress", response=progress)
        streaming_text = run.plan is None  # plain text streams into item 0 as it comes
        if streaming_text:
            for event in _open_message(ev, shape, 0):
                yield event
        async for frame in run.frames(lambda piece: _text_delta(ev, shape, 0, piece), _PING):
            yield frame
        answer = run.result
        assert answer is not None  # the stream ends with the answer or raises
        output = shape.output(answer)
        for index, item in enumerate(output):
            events = (_close_item(ev, index, item) if streaming_text
                      else _whole_item(ev, shape, index, item))
            for event in events:
                yield event
        # "response.completed" even for an answer cut short, whose status says "incomplete":
        # llama-server's clients (and the official client's stream helper) wait for this event
        yield ev("response.completed", response=shape.response(answer, output),
                 timings=timings(answer.final.timings))
    except Exception as exc:  # after the 200: an error event the client raises from
        error = to_api_error(exc).body()["error"]
        yield ev("error", code=error["type"], message=error["message"], param=None,
                 error=error)
