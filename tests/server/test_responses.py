"""OpenAI's Responses API (/v1/responses, /v1/responses/input_tokens) with the official
``openai`` client, unchanged, against the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from server_helpers import (Running, error_of, leave_while_streaming, named_sse_events,
                            running_server)

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
               "required": ["city", "unit"]}}
ASK = "What is the weather like in Paris today?"
KEY = "sk-responses-test-3"
LONE = "\ud800"


@pytest.fixture(scope="module")
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0,
                       timeout=300) as c:
        yield c


def create(oai: openai.OpenAI, **body: Any) -> Any:
    body.setdefault("input", "Say hello to Ada.")
    body.setdefault("max_output_tokens", 8)
    return oai.responses.create(model="gpt-test", temperature=0, **body)


def test_plain_answer(oai: openai.OpenAI) -> None:
    r = create(oai, instructions="You are brief.")
    assert r.id.startswith("resp_") and r.object == "response" and r.model == "gpt-test"
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant"
    assert r.output_text and item.content[0].text == r.output_text
    assert r.instructions == "You are brief." and r.max_output_tokens == 8
    if r.status == "incomplete":  # cut by max_output_tokens, as OpenAI says it
        assert r.incomplete_details.reason == "max_output_tokens" and r.usage.output_tokens == 8
    else:
        assert r.status == "completed" and r.incomplete_details is None
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_input_forms_are_the_same_prompt(oai: openai.OpenAI) -> None:
    def count(**body: Any) -> int:
        return oai.responses.input_tokens.count(model="m", **body).input_tokens

    plain = count(instructions="Be brief.", input="Say hi.")
    assert plain == count(input=[
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Say hi."}]}])
    assert plain != count(input="Say hi.")


@pytest.mark.parametrize("tools", [False, True])
def test_input_tokens_is_the_prompt_that_runs(oai: openai.OpenAI, tools: bool) -> None:
    body: dict[str, Any] = {"input": f"Count me, tools={tools}.", "instructions": "You count."}
    if tools:
        body["tools"] = [WEATHER]
    counted = oai.responses.input_tokens.count(model="m", **body)
    assert counted.object == "response.input_tokens"
    assert create(oai, max_output_tokens=2, **body).usage.input_tokens == counted.input_tokens


def test_streamed_events_in_order(oai: openai.OpenAI) -> None:
    events = list(create(oai, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and events[-4].text == text
    final = events[-1].response
    assert final.output_text == text and final.id == events[0].response.id
    assert final.usage.output_tokens > 0

    with oai.responses.stream(model="m", input="Say hello to Ada.", max_output_tokens=8,
                              temperature=0) as stream:
        streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert stream.get_final_response().output_text == streamed == text


def test_a_final_assistant_message_is_continued(oai: openai.OpenAI) -> None:
    r = create(oai, input=[{"role": "user", "content": "Say hello to Ada."},
                           {"role": "assistant", "content": "Hello Ada, I am"}])
    assert r.output_text.startswith("Hello Ada, I am")


def test_images_need_a_projector(oai: openai.OpenAI) -> None:
    image = {"type": "input_image", "image_url": "http://127.0.0.1:9/x.png"}
    with pytest.raises(openai.BadRequestError, match="--mmproj"):
        create(oai, input=[{"role": "user", "content": [image]}])


def _weather_call(r: Any) -> Any:
    (call,) = r.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    args = json.loads(call.arguments)
    assert args["city"] in ("Paris", "London", "Tokyo")
    assert args["unit"] in ("celsius", "fahrenheit")
    return call


def test_forced_function_call_then_its_output(oai: openai.OpenAI) -> None:
    # the call is JSON the model writes whole: more than 16 tokens (the session caps 64)
    call = _weather_call(create(oai, input=ASK, tools=[WEATHER], max_output_tokens=64,
                                tool_choice={"type": "function", "name": "get_weather"}))
    history = [{"role": "user", "content": ASK}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id,
                "output": "18 degrees"}]
    answer = create(oai, input=history, tools=[WEATHER], tool_choice="none")
    assert answer.output[0].type == "message" and answer.output_text
    unknown = [*history[:2], {**history[2], "call_id": "call_nobody"}]
    with pytest.raises(openai.BadRequestError, match="function_call item"):
        create(oai, input=unknown, tools=[WEATHER])


def test_streamed_function_call(oai: openai.OpenAI) -> None:
    events = list(create(oai, input=ASK, tools=[WEATHER], tool_choice="required",
                         max_output_tokens=64, stream=True))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    assert events[2].item.type == "function_call" and events[2].item.status == "in_progress"
    assert events[3].delta == events[4].arguments == events[5].item.arguments
    _weather_call(events[-1].response)


def test_json_schema_text_format(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    r = create(oai, input="Is water wet? Answer in JSON.", max_output_tokens=32,
               text={"format": {"type": "json_schema", "name": "answer", "schema": schema}})
    assert isinstance(json.loads(r.output_text)["ok"], bool)


@pytest.mark.parametrize(("body", "match"), [
    ({"previous_response_id": "resp_earlier"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"background": True}, "background"),
    ({"tools": [{"type": "web_search"}]}, "web_search"),
    ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "file inputs"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"input": []}, "empty"),
    ({"input": 5}, "input"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "role"),
    ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}, "type"),
    ({"max_output_tokens": 10**12}, "max_output_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"tools": [{"type": "function", "parameters": {}}]}, "name"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format"),
])
def test_unsupported_and_bad_requests_raise_bad_request(oai: openai.OpenAI,
                                                        body: dict[str, Any],
                                                        match: str) -> None:
    base: dict[str, Any] = {"model": "m", "input": "hi", "max_output_tokens": 4}
    with pytest.raises(openai.BadRequestError, match=match) as caught:
        oai.responses.create(**{**base, **body})
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"


def test_template_variables_reach_the_template(oai: openai.OpenAI) -> None:
    # llama-server's chat_template_kwargs extension; a name the template owns proves where it went
    with pytest.raises(openai.BadRequestError, match="chat template variable"):
        oai.responses.input_tokens.count(model="m", input="hi",
                                         extra_body={"chat_template_kwargs": {"messages": []}})
    effort = oai.responses.input_tokens.count(model="m", input="hi", reasoning={"effort": "low"})
    assert effort.input_tokens > 0  # reasoning_effort is a variable this template ignores


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/responses/input_tokens"])
@pytest.mark.parametrize("body", [
    {"input": LONE}, {"instructions": LONE}, {"model": LONE}, {"user": LONE},
    {"metadata": {"k": LONE}},
    {"input": [{"role": "user", "content": [{"type": "input_text", "text": LONE}]}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": LONE}]},
    {"tools": [{**WEATHER, "name": LONE}]}, {"tools": [{**WEATHER, "description": LONE}]},
    {"tool_choice": {"type": "function", "name": LONE}},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "c", "output": LONE}]},
    {"text": {"format": {"type": "json_schema", "name": "a", "schema": {"enum": [LONE]}}}},
    {"reasoning": {"effort": LONE}},
])
def test_lone_surrogates_anywhere_are_400(client: httpx.Client, path: str,
                                          body: dict[str, Any]) -> None:
    raw = json.dumps({"input": "hi", "max_output_tokens": 2, **body})  # \ud800 as an escape
    r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert "lone surrogate" in error_of(r, 400, "invalid_request_error")["message"]


def test_non_finite_numbers_are_400(client: httpx.Client) -> None:
    for number in ("NaN", "Infinity", "1e999"):
        raw = f'{{"input": "hi", "max_output_tokens": 2, "top_p": {number}}}'
        error_of(client.post("/v1/responses", content=raw), 400, "invalid_request_error")


def test_raw_stream_and_bare_route(client: httpx.Client) -> None:
    r = client.post("/responses", json={"input": "hi", "max_output_tokens": 2, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = named_sse_events(r.text)
    assert all(name == data["type"] for name, data in events)
    assert events[-1][1]["response"]["status"] == "incomplete"  # 2 tokens cut the answer
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.fixture(scope="module")
def keyed() -> Iterator[Running]:
    with running_server(parallel=1, ctx_size=1024, api_key=[KEY]) as running:
        yield running


def test_api_keys(keyed: Running) -> None:
    def ask(key: str) -> Any:
        with openai.OpenAI(base_url=keyed.url + "/v1", api_key=key, max_retries=0,
                           timeout=60) as c:
            return c.responses.create(model="m", input="hi", max_output_tokens=2)

    assert ask(KEY).output
    with pytest.raises(openai.AuthenticationError):
        ask(KEY + "x")
    r = httpx.post(keyed.url + "/v1/responses/input_tokens", json={"input": "hi"},
                   headers={"X-Api-Key": KEY}, timeout=60)
    assert r.json()["input_tokens"] > 0


def test_disconnect_cancels_the_request(keyed: Running) -> None:
    leave_while_streaming(keyed, "/v1/responses", {"max_output_tokens": 400,
                                                   "input": "Tell me a long story."},
                          "response.output_text.delta", {"Authorization": f"Bearer {KEY}"})
