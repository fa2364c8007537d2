"""Tool calls in /v1/chat/completions: the generic JSON form, constrained by a grammar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from server_helpers import error_of, serve_in_thread, sse_events

from llamaserver import LlamaServer

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


@pytest.fixture(scope="module")
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0,
                       timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def roomy() -> Iterator[httpx.Client]:
    running = serve_in_thread(LlamaServer(parallel=1, ctx_size=2048).app)
    with httpx.Client(base_url=running.url, timeout=120) as c:
        yield c
    running.stop()


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 64,
                                                     "temperature": 0, **body})


def test_required_tool_call_with_the_openai_client(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="m", messages=ASK, tools=[WEATHER, TIME],
                                    tool_choice="required", max_tokens=64, temperature=0)
    (choice,) = r.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        assert args["city"] in ("Paris", "London", "Tokyo")
        assert args["unit"] in ("celsius", "fahrenheit")
    else:
        assert call.function.name == "get_time" and args["zone"] in ("UTC", "CET")


def test_named_tool_choice_and_parallel_calls(client: httpx.Client) -> None:
    named = chat(client, tools=[WEATHER, TIME],
                 tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = named.json()["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_time"]
    assert json.loads(calls[0]["function"]["arguments"])["zone"] in ("UTC", "CET")


def test_parallel_tool_calls(roomy: httpx.Client) -> None:
    # this small model lists calls until the array is long: room beyond the session's -n 64
    parallel = chat(roomy, tools=[WEATHER], tool_choice="required", parallel_tool_calls=True,
                    max_tokens=200)
    choice = parallel.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert len(calls) >= 1 and len({c["id"] for c in calls}) == len(calls)
    assert {c["function"]["name"] for c in calls} == {"get_weather"}
    assert all(json.loads(c["function"]["arguments"])["city"] == "Paris" for c in calls)


def test_auto_is_either_an_answer_or_a_call(roomy: httpx.Client) -> None:
    choice = chat(roomy, tools=[WEATHER], max_tokens=160).json()["choices"][0]
    message = choice["message"]
    if message.get("tool_calls"):
        assert choice["finish_reason"] == "tool_calls" and message["content"] is None
        assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    else:  # a direct answer: the text of {"response": ...}, not the JSON around it
        assert choice["finish_reason"] == "stop"
        assert isinstance(message["content"], str) and not message["content"].startswith('{"')


def test_none_leaves_plain_chat(client: httpx.Client) -> None:
    plain = chat(client, max_tokens=8).json()["choices"][0]["message"]
    ignored = chat(client, max_tokens=8, tools=[WEATHER], tool_choice="none").json()
    assert ignored["choices"][0]["message"] == plain


def test_streamed_tool_call(client: httpx.Client) -> None:
    response = chat(client, tools=[WEATHER], tool_choice="required", stream=True)
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    deltas = [c["delta"] for e in events[:-1] for c in e["choices"]]
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert len(calls) == 1 and calls[0]["index"] == 0
    assert calls[0]["function"]["name"] == "get_weather"
    json.loads(calls[0]["function"]["arguments"])
    assert not any(d.get("content") for d in deltas)  # no raw JSON leaks as text
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_history_with_tool_results_renders(client: httpx.Client) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}
    messages = ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"}]
    rendered = client.post("/apply-template", json={"messages": messages, "tools": [WEATHER]})
    prompt = rendered.json()["prompt"]
    assert "get_weather" in prompt and "18 degrees, sunny" in prompt
    assert '"tool_call": {"name": "get_weather"' in prompt
    answer = chat(client, messages=messages, tools=[WEATHER], max_tokens=96)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("body", [
    {"tools": [{"type": "function"}]},
    {"tools": [{"type": "retrieval", "function": {"name": "x"}}]},
    {"tools": [WEATHER, WEATHER]},
    {"tools": "get_weather"},
    {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
    {"tools": [WEATHER], "tool_choice": "sometimes"},
    {"tool_choice": "required"},
    {"tools": [WEATHER], "response_format": {"type": "json_object"}},
])
def test_bad_tool_requests_are_400(client: httpx.Client, body: dict[str, Any]) -> None:
    error_of(chat(client, **body), 400, "invalid_request_error")


@pytest.mark.parametrize("calls", [[{"function": "get_weather"}], ["get_weather"], {"id": "x"},
                                   [{"type": "function", "function": {"arguments": "{}"}}]])
def test_bad_tool_calls_in_history_are_400(client: httpx.Client, calls: Any) -> None:
    messages = ASK + [{"role": "assistant", "content": None, "tool_calls": calls}]
    error_of(chat(client, messages=messages, tools=[WEATHER]), 400, "invalid_request_error")


def test_tool_parameters_with_local_definitions(client: httpx.Client) -> None:
    booking = {"type": "function", "function": {"name": "book", "parameters": {
        "type": "object", "properties": {"seat": {"$ref": "#/$defs/Seat"}}, "required": ["seat"],
        "$defs": {"Seat": {"type": "string", "enum": ["aisle", "window"]}}}}}
    calls = chat(client, tools=[booking], tool_choice="required").json()["choices"][0]["message"]["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"])["seat"] in ("aisle", "window")
    clash = {"type": "function", "function": {"name": "other", "parameters": {
        "type": "object", "$defs": {"Seat": {"type": "integer"}}}}}
    error_of(chat(client, tools=[booking, clash]), 400, "invalid_request_error")
