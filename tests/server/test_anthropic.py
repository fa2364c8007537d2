"""Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens) with the official
``anthropic`` client, unchanged, against the real server.

This client no longer takes ``temperature`` as an argument: it goes in ``extra_body``, as
any field the client does not know.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from server_helpers import (Running, error_of, leave_while_streaming, named_sse_events,
                            running_server)

from llamaserver.http._chat_bridge import with_pings

GREEDY = {"temperature": 0}
WEATHER = {"name": "get_weather", "description": "Current weather in a city.",
           "input_schema": {"type": "object", "properties": {
               "city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
               "required": ["city", "unit"]}}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
HI = [{"role": "user", "content": "Say hello to Ada."}]
KEY = "sk-anthropic-test-7"
LONE = "\ud800"


@pytest.fixture(scope="module")
def claude(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="none", max_retries=0,
                             timeout=300) as c:
        yield c


def create(claude: anthropic.Anthropic, **body: Any) -> anthropic.types.Message:
    body.setdefault("messages", HI)
    body.setdefault("max_tokens", 8)
    return claude.messages.create(model="claude-test", extra_body=GREEDY, **body)


def test_plain_answer(claude: anthropic.Anthropic) -> None:
    m = create(claude, system="You are brief.")
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == "claude-test"
    (block,) = m.content
    assert block.type == "text" and block.text
    assert m.stop_reason in ("end_turn", "max_tokens") and m.stop_sequence is None
    assert 0 < m.usage.output_tokens <= 8 and m.usage.input_tokens > 0


def test_system_prompt_forms_are_the_same_prompt(claude: anthropic.Anthropic) -> None:
    def count(system: Any) -> int:
        return claude.messages.count_tokens(model="m", messages=HI, system=system).input_tokens

    text = [{"type": "text", "text": "You are brief."}, {"type": "text", "text": "Be kind."}]
    assert count(text) == count("You are brief.\nBe kind.")
    assert count(text[:1]) == count("You are brief.") != count("You are brief.\nBe kind.")


@pytest.mark.parametrize("tools", [False, True])
def test_count_tokens_is_the_prompt_that_runs(claude: anthropic.Anthropic, tools: bool) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "Count me, tools={tools}."}],
                            "system": "You count."}
    if tools:
        body.update(tools=[WEATHER], tool_choice={"type": "auto"})
    counted = claude.messages.count_tokens(model="m", **body).input_tokens
    usage = create(claude, max_tokens=2, **body).usage
    # Anthropic counts prompt tokens read from the cache apart
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) == counted


def test_streamed_events_and_text(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.create(model="m", max_tokens=8, messages=HI, stream=True,
                                 extra_body=GREEDY)
    events = list(raw)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert all(e.delta.type == "text_delta" and e.index == 0
               for e in events if e.type == "content_block_delta")
    end = events[-2]
    assert end.delta.stop_reason in ("end_turn", "max_tokens") and end.usage.output_tokens > 0

    with claude.messages.stream(model="m", max_tokens=8, messages=HI,
                                extra_body=GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert "".join(deltas) == text  # greedy: the same answer either way


def test_stop_sequence(claude: anthropic.Anthropic) -> None:
    m = create(claude, stop_sequences=[" "], max_tokens=16)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == " "
    assert " " not in m.content[0].text
    with claude.messages.stream(model="m", max_tokens=16, messages=HI, stop_sequences=[" "],
                                extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", " ")


def test_a_final_assistant_message_is_continued(claude: anthropic.Anthropic) -> None:
    prefill = HI + [{"role": "assistant", "content": "Hello Ada, I am"}]
    assert create(claude, messages=prefill).content[0].text.startswith("Hello Ada, I am")
    with claude.messages.stream(model="m", max_tokens=4, messages=prefill,
                                extra_body=GREEDY) as stream:
        assert next(iter(stream.text_stream)) == "Hello Ada, I am"


def test_images_need_a_projector(claude: anthropic.Anthropic) -> None:
    image = {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/x.png"}}
    with pytest.raises(anthropic.BadRequestError, match="--mmproj"):
        create(claude, messages=[{"role": "user", "content": [image]}])


def _weather_call(message: anthropic.types.Message) -> Any:
    assert message.stop_reason == "tool_use"
    (call,) = message.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.id
    assert call.input["city"] in ("Paris", "London", "Tokyo")
    assert call.input["unit"] in ("celsius", "fahrenheit")
    return call


def test_forced_tool_call_then_its_result(claude: anthropic.Anthropic) -> None:
    # the tool call is JSON the model writes whole: more than 16 tokens (the session caps 64)
    call = _weather_call(create(claude, messages=ASK, tools=[WEATHER], max_tokens=64,
                                tool_choice={"type": "tool", "name": "get_weather"}))

    def history(result: str) -> list[dict[str, Any]]:
        return ASK + [{"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
                      {"role": "user", "content": [{"type": "tool_result",
                                                    "tool_use_id": call.id,
                                                    "content": result}]}]

    # the result is in the prompt
    counts = {claude.messages.count_tokens(model="m", messages=history(r), tools=[WEATHER])
              .input_tokens for r in ("18 degrees", "18 degrees and sunny all day")}
    assert len(counts) == 2
    answer = create(claude, messages=history("18 degrees"), tools=[WEATHER],
                    tool_choice={"type": "none"})
    assert answer.content[0].type == "text" and answer.content[0].text
    assert answer.stop_reason in ("end_turn", "max_tokens")


def test_streamed_tool_call(claude: anthropic.Anthropic) -> None:
    raw = list(claude.messages.create(model="m", max_tokens=64, messages=ASK, stream=True,
                                      tools=[WEATHER], tool_choice={"type": "any"},
                                      extra_body=GREEDY))
    kinds = [e.type for e in raw]
    assert kinds == ["message_start", "content_block_start", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert raw[1].content_block.type == "tool_use" and raw[2].delta.type == "input_json_delta"
    with claude.messages.stream(model="m", max_tokens=64, messages=ASK, tools=[WEATHER],
                                tool_choice={"type": "any"}, extra_body=GREEDY) as stream:
        _weather_call(stream.get_final_message())


@pytest.mark.parametrize("body", [
    {"messages": []},
    {"messages": "hello"},
    {"messages": [{"role": "system", "content": "hi"}]},
    {"messages": [{"role": "user", "content": []}]},
    {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_nobody", "content": "18"}]}]},
    {"messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]}]},
    {"max_tokens": 10**12},
    {"max_tokens": 0},
    {"max_tokens": "8"},
    {"stop_sequences": "stop"},
    {"system": [{"type": "image", "source": {}}]},
    {"tools": [{"name": "get_weather"}]},
    {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
    {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
    {"tool_choice": {"type": "any"}},
    {"metadata": {"user_id": 7}},
])
def test_bad_requests_raise_bad_request(claude: anthropic.Anthropic,
                                        body: dict[str, Any]) -> None:
    base: dict[str, Any] = {"model": "m", "max_tokens": 4, "messages": HI}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(**{**base, **body})
    error = caught.value.body["error"]
    assert caught.value.status_code == 400 and error["type"] == "invalid_request_error"


def test_out_of_range_sampling_raises_bad_request(claude: anthropic.Anthropic) -> None:
    for extra in ({"temperature": -1}, {"top_p": 1.5}, {"top_k": -1}, {"temperature": "0"}):
        with pytest.raises(anthropic.BadRequestError):
            claude.messages.create(model="m", max_tokens=4, messages=HI, extra_body=extra)


def test_template_variables_reach_the_template(claude: anthropic.Anthropic) -> None:
    # llama-server's chat_template_kwargs extension; a name the template owns proves where it went
    with pytest.raises(anthropic.BadRequestError, match="chat template variable"):
        claude.messages.count_tokens(model="m", messages=HI,
                                     extra_body={"chat_template_kwargs": {"messages": []}})
    thinking = claude.messages.count_tokens(model="m", messages=HI,
                                            thinking={"type": "enabled", "budget_tokens": 1024})
    assert thinking.input_tokens > 0  # enable_thinking is a variable this template ignores


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("body", [
    {"system": LONE}, {"system": [{"type": "text", "text": LONE}]}, {"model": LONE},
    {"messages": [{"role": "user", "content": LONE}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "a" + LONE}]}]},
    {"stop_sequences": [LONE]}, {"metadata": {"user_id": LONE}},
    {"tools": [{**WEATHER, "name": LONE}]}, {"tools": [{**WEATHER, "description": LONE}]},
    {"tools": [{**WEATHER, "input_schema": {"type": "object", "properties": {LONE: {}}}}]},
    {"messages": ASK + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": LONE, "name": "x",
                                           "input": {}}]}]},
    {"messages": ASK + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "x",
                                           "input": {"city": LONE}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                      "content": [{"type": "text", "text": LONE}]}]}]},
    {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": LONE}},
    {"output_config": {"format": {"type": "json_schema", "schema": {"enum": [LONE]}}}},
])
def test_lone_surrogates_anywhere_are_400(client: httpx.Client, path: str,
                                          body: dict[str, Any]) -> None:
    raw = json.dumps({"max_tokens": 2, "messages": HI, **body})  # ASCII: \ud800 as an escape
    r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert "lone surrogate" in error_of(r, 400, "invalid_request_error")["message"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(client: httpx.Client, number: str) -> None:
    raw = '{"max_tokens": 2, "messages": [{"role": "user", "content": "hi"}], ' \
          f'"temperature": {number}}}'
    error_of(client.post("/v1/messages", content=raw), 400, "invalid_request_error")


@pytest.fixture(scope="module")
def keyed() -> Iterator[Running]:
    with running_server(parallel=1, ctx_size=1024, api_key=[KEY]) as running:
        yield running


def test_api_keys(keyed: Running) -> None:
    def ask(**auth: str) -> anthropic.types.Message:
        with anthropic.Anthropic(base_url=keyed.url, max_retries=0, timeout=60, **auth) as c:
            return c.messages.create(model="m", max_tokens=2, messages=HI)

    assert ask(api_key=KEY).content                  # X-Api-Key
    assert ask(auth_token=KEY).content               # Authorization: Bearer
    with pytest.raises(anthropic.AuthenticationError):
        ask(api_key=KEY + "x")
    with anthropic.Anthropic(base_url=keyed.url, api_key="wrong", max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError):
            c.messages.count_tokens(model="m", messages=HI)


def test_raw_stream_names_every_event(client: httpx.Client) -> None:
    r = client.post("/v1/messages", json={"max_tokens": 3, "messages": HI, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = named_sse_events(r.text)
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] > 0 and start["content"] == []
    assert events[-2][1]["usage"]["output_tokens"] == 3


async def test_pings_fill_silences_without_ending_the_stream() -> None:
    async def slow() -> AsyncIterator[int]:
        for n in (1, 2):
            await asyncio.sleep(0.25)
            yield n

    seen = [item async for item in with_pings(slow(), 0.1)]
    assert [item for item in seen if item is not None] == [1, 2]
    assert seen.count(None) >= 2 and seen[-1] == 2

    left: list[str] = []

    async def endless() -> AsyncIterator[int]:
        try:
            await asyncio.sleep(60)
            yield 0
        finally:
            left.append("closed")

    pings = with_pings(endless(), 0.05)
    assert await anext(pings) is None
    await pings.aclose()  # a client that goes away: the pending step is cancelled
    assert left == ["closed"]


def test_disconnect_cancels_the_request(keyed: Running) -> None:
    leave_while_streaming(keyed, "/v1/messages", {"max_tokens": 400, "messages": [
        {"role": "user", "content": "Tell me a long story."}]}, "content_block_delta",
        {"x-api-key": KEY})
