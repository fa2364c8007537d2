"""/v1/messages and /v1/responses on the chat pipeline's formats: thinking (thinking blocks,
reasoning items) and tool calls in a template's own format.  SmolLM2 does neither by itself:
the reasoning tests' template opens a <think> block in its generation prompt (unless
enable_thinking is false) and a thinking budget makes the model close it; the tool-format
tests' Hermes template declares a format, and a required call makes the model use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from server_helpers import THINKING_TEMPLATE, Running, running_server
from test_tool_formats import HERMES

HI = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def thinker() -> Iterator[Running]:
    with running_server(parallel=1, ctx_size=1024, chat_template=THINKING_TEMPLATE) as running:
        yield running


@pytest.fixture(scope="module")
def claude(thinker: Running) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=thinker.url, api_key="none", max_retries=0,
                             timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def oai(thinker: Running) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=thinker.url + "/v1", api_key="none", max_retries=0,
                       timeout=300) as c:
        yield c


def test_thinking_blocks(claude: anthropic.Anthropic) -> None:
    body: dict[str, Any] = {"model": "m", "max_tokens": 12, "messages": HI,
                            "thinking": {"type": "enabled", "budget_tokens": 2},
                            "extra_body": GREEDY}
    m = claude.messages.create(**body)
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].thinking and m.content[0].signature == "" and m.content[1].text

    events = list(claude.messages.create(stream=True, **body))
    starts = [(e.index, e.content_block.type) for e in events if e.type == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text")]
    deltas = [(e.index, e.delta.type) for e in events if e.type == "content_block_delta"]
    assert deltas[0] == (0, "thinking_delta") and (0, "signature_delta") in deltas
    assert deltas[-1] == (1, "text_delta")
    thought = "".join(e.delta.thinking for e in events
                      if e.type == "content_block_delta" and e.delta.type == "thinking_delta")
    assert thought == m.content[0].thinking  # greedy: the same thinking either way

    off = claude.messages.create(**{**body, "thinking": {"type": "disabled"}})
    assert [b.type for b in off.content] == ["text"]


def test_reasoning_items(oai: openai.OpenAI) -> None:
    body: dict[str, Any] = {"model": "m", "input": "What is the capital of France?",
                            "max_output_tokens": 12, "temperature": 0,
                            "extra_body": {"reasoning_budget": 2}}  # llama.cpp's, passed on
    r = oai.responses.create(**body)
    assert [item.type for item in r.output] == ["reasoning", "message"]
    assert r.output[0].content[0].text and r.output_text

    events = list(oai.responses.create(stream=True, **body))
    kinds = [e.type for e in events]
    assert "response.reasoning_text.delta" in kinds
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added == ["reasoning", "message"]
    final = events[-1].response
    assert final.output[0].content[0].text == r.output[0].content[0].text
    assert final.output_text == r.output_text

    off = oai.responses.create(**{**body, "reasoning": {"effort": "none"}})
    assert [item.type for item in off.output] == ["message"]


WEATHER = {"name": "get_weather", "description": "Current weather in a city.",
           "input_schema": {"type": "object", "properties": {
               "city": {"type": "string", "enum": ["Paris", "London"]}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def hermes() -> Iterator[Running]:
    with running_server(parallel=1, ctx_size=1024, chat_template=HERMES) as running:
        yield running


def test_native_tool_calls(hermes: Running) -> None:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    with anthropic.Anthropic(base_url=hermes.url, api_key="none", max_retries=0,
                             timeout=300) as claude:
        body: dict[str, Any] = {"model": "m", "max_tokens": 48, "messages": ask,
                                "tools": [WEATHER], "tool_choice": {"type": "any"}}
        (call,) = claude.messages.create(**body).content
        assert call.type == "tool_use" and call.input["city"] in ("Paris", "London")
        events = list(claude.messages.create(stream=True, **body))
        assert [e.content_block.type for e in events if e.type == "content_block_start"] == [
            "tool_use"]
        assert events[-2].delta.stop_reason == "tool_use"
    with openai.OpenAI(base_url=hermes.url + "/v1", api_key="none", max_retries=0,
                       timeout=300) as oai:
        tool = {"type": "function", "name": WEATHER["name"],
                "parameters": WEATHER["input_schema"]}
        r = oai.responses.create(model="m", input="Weather in Paris?", tools=[tool],
                                 tool_choice="required", max_output_tokens=48)
        (item,) = r.output
        assert item.type == "function_call"
        assert json.loads(item.arguments)["city"] in ("Paris", "London")
