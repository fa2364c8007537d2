"""Tool calls in a model's own format (Hermes/Qwen, Llama 3.x, Mistral), declared by its chat
template: tools rendered by the template, required calls held by a grammar in that format and
parsed into OpenAI's tool_calls (streamed or not), tool results in the template's shapes, calls
cut short by max_tokens.  SmolLM2 knows none of these formats; the templates below are written
for these tests, and tool_choice "required" makes the model write a valid call."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from server_helpers import error_of, running_server, sse_events

from llamaserver.http._tool_formats import FORMATS, tool_format
from llamaserver.http._tool_parse import TOOL_CALL
from llamaserver.http._tools import plan_tools

HERMES = """{%- if tools %}<|im_start|>system
You may call functions. Their signatures:
<tools>
{% for tool in tools %}{{ tool.function | tojson }}
{% endfor %}</tools>
To call one, answer with <tool_call>
{"name": <name>, "arguments": <arguments>}
</tool_call><|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == "assistant" and m.tool_calls %}<|im_start|>assistant
{% for call in m.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{% endfor %}<|im_end|>
{% elif m.role == "tool" %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ m.role }}
{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if think is defined and think %}<think>
{% endif %}{% endif %}"""

LLAMA3 = """{%- if tools %}<|start_header_id|>system<|end_header_id|>

Environment: ipython
To use a function, answer with JSON {"name": function name, "parameters": arguments}.
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|eot_id|>
{%- endif %}
{%- for m in messages %}
{%- if m.role == "assistant" and m.tool_calls %}<|start_header_id|>assistant<|end_header_id|>

{% for call in m.tool_calls %}{"name": "{{ call.function.name }}", "parameters": {{ call.function.arguments | tojson }}}{% endfor %}<|eot_id|>
{%- elif m.role == "tool" %}<|start_header_id|>ipython<|end_header_id|>

{{ m.content }}<|eot_id|>
{%- else %}<|start_header_id|>{{ m.role }}<|end_header_id|>

{{ m.content }}<|eot_id|>
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}"""

MISTRAL = """{%- if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}
{%- for m in messages %}
{%- if m.role == "user" %}[INST]{{ m.content }}[/INST]
{%- elif m.role == "assistant" and m.tool_calls %}[TOOL_CALLS][{% for call in m.tool_calls %}{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}, "id": "{{ call.id }}"}{% if not loop.last %}, {% endif %}{% endfor %}]</s>
{%- elif m.role == "tool" %}[TOOL_RESULTS]{"call_id": "{{ m.tool_call_id }}", "content": {{ m.content | tojson }}}[/TOOL_RESULTS]
{%- else %}{{ m.content }}</s>
{%- endif %}
{%- endfor %}"""

# per format: its template, how it lists the tools, how an earlier call and its result look
CASES = {
    "hermes": (HERMES, "<tools>\n{\"name\": \"weather\"",
               '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>',
               "<tool_response>\n18 degrees\n</tool_response>"),
    "llama3": (LLAMA3, "Environment: ipython",
               '{"name": "weather", "parameters": {"city": "Paris"}}<|eot_id|>',
               "ipython<|end_header_id|>\n\n18 degrees<|eot_id|>"),
    "mistral": (MISTRAL, "[AVAILABLE_TOOLS][{\"type\": \"function\"",
                '[TOOL_CALLS][{"name": "weather", "arguments": {"city": "Paris"}, '
                '"id": "abcDEF123"}]',
                '[TOOL_RESULTS]{"call_id": "abcDEF123", "content": "18 degrees"}'),
}
MARKERS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", '{"name"', "</tool_call>")
WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string",
                                                             "enum": ["Paris", "London"]}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "What is the weather like in Paris?"}]
HISTORY = ASK + [
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "abcDEF123", "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "abcDEF123", "content": "18 degrees"}]


@pytest.fixture(scope="module", params=sorted(CASES))
def native(request: pytest.FixtureRequest) -> Iterator[tuple[str, httpx.Client]]:
    with running_server(parallel=1, ctx_size=1024, chat_template=CASES[request.param][0]) as r:
        with httpx.Client(base_url=r.url, timeout=300) as c:
            yield request.param, c


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={
        "messages": ASK, "tools": [WEATHER], "max_tokens": 32, "temperature": 0, **body})


def deltas_of(response: httpx.Response) -> tuple[list[dict[str, Any]], str]:
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    return ([c["delta"] for e in events[:-1] for c in e["choices"]],
            events[-2]["choices"][0]["finish_reason"])


def no_wrapper(text: str | None) -> bool:
    return not any(marker in (text or "") for marker in MARKERS)


# ---- detection and reading, without the model ----------------------------------------------

def test_the_format_is_read_from_the_template() -> None:
    assert {name: tool_format(source).name for name, (source, *_) in CASES.items()} == {
        name: name for name in CASES}
    assert tool_format("{% for m in messages %}{{ m.content }}{% endfor %}") is None


@pytest.mark.parametrize("fmt,text", [
    ("hermes", 'Let me look.<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}'
               '\n</tool_call>\n<tool_call>{"name": "clock", "arguments": {}}</tool_call>'),
    ("mistral", 'Let me look.[TOOL_CALLS][{"name": "weather", "arguments": {"city": "Paris"},'
                ' "id": "abcDEF123"}, {"name": "clock", "arguments": {}}]'),
    ("llama3", 'Let me look.<|python_tag|>{"name": "weather", "parameters": {"city": "Paris"}}; '
               '{"name": "clock", "parameters": {}}'),
])
def test_auto_answers_are_read_at_every_piece_boundary(fmt: str, text: str) -> None:
    (tool_fmt,) = [f for f in FORMATS if f.name == fmt]
    for cut in itertools.combinations(range(1, len(text)), 2):
        reader = tool_fmt.reader()
        parts = [p for i, j in zip((0, *cut), (*cut, len(text))) for p in reader.feed(text[i:j])]
        parts += reader.finish(cut=False)
        content = "".join(v for k, v in parts if k != TOOL_CALL)
        calls = [v["function"] for k, v in parts if k == TOOL_CALL]
        assert content == "Let me look.", (cut, parts)
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
            ("weather", {"city": "Paris"}), ("clock", {})]


def test_a_cut_call_leaves_no_wrapper() -> None:
    for fmt, text in [("hermes", 'Hm.<tool_call>\n{"name": "weather", "argu'),
                      ("mistral", 'Hm.[TOOL_CALLS][{"name": "weather"'),
                      ("llama3", 'Hm.<|python_tag|>{"name": "wea'), ("hermes", "Hm.<tool_")]:
        (tool_fmt,) = [f for f in FORMATS if f.name == fmt]
        reader = tool_fmt.reader()
        parts = reader.feed(text) + reader.finish(cut=True)
        assert parts == [("content", "Hm.")]
    plan = plan_tools([WEATHER], "auto", False)
    assert plan is not None
    assert plan.read('{"tool_call": {"name": "weath', cut=True) == (None, [])
    assert plan.read('{"response": "Hello wor', cut=True) == ("Hello wor", [])


# ---- each format, with the model -----------------------------------------------------------

def test_tools_are_rendered_by_the_template(native: tuple[str, httpx.Client]) -> None:
    name, client = native
    prompt = client.post("/apply-template", json={"messages": ASK, "tools": [WEATHER]}).json()
    assert CASES[name][1] in prompt["prompt"]
    assert "You can call these tools" not in prompt["prompt"]  # not the generic note


def test_a_required_call_streamed_and_not(native: tuple[str, httpx.Client]) -> None:
    name, client = native
    choice = chat(client, tool_choice="required").json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"])["city"] in ("Paris", "London")
    if name == "mistral":
        assert re.fullmatch(r"[A-Za-z0-9]{9}", call["id"])
    else:
        assert call["id"].startswith("call_")

    deltas, finish = deltas_of(chat(client, tool_choice="required", stream=True))
    assert finish == "tool_calls"
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert [c["index"] for c in calls] == [0]
    assert calls[0]["function"] == call["function"]
    assert all(no_wrapper(d.get("content")) for d in deltas)


def test_a_tool_result_round_trip(native: tuple[str, httpx.Client]) -> None:
    name, client = native
    prompt = client.post("/apply-template", json={"messages": HISTORY, "tools": [WEATHER]})
    assert CASES[name][2] in prompt.json()["prompt"]  # the call in the template's own shape
    assert CASES[name][3] in prompt.json()["prompt"]
    answer = chat(client, messages=HISTORY, max_tokens=4)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["role"] == "assistant"


def test_a_call_cut_short_is_length(native: tuple[str, httpx.Client]) -> None:
    _, client = native
    choice = chat(client, tool_choice="required", max_tokens=6).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert "tool_calls" not in choice["message"] and no_wrapper(choice["message"]["content"])
    deltas, finish = deltas_of(chat(client, tool_choice="required", max_tokens=6, stream=True))
    assert finish == "length"
    assert not any(d.get("tool_calls") for d in deltas)
    assert all(no_wrapper(d.get("content")) for d in deltas)


# ---- thinking, hostile input, the generic form ---------------------------------------------

@pytest.fixture(scope="module")
def hermes() -> Iterator[httpx.Client]:
    with running_server(parallel=1, ctx_size=1024, chat_template=HERMES) as r:
        with httpx.Client(base_url=r.url, timeout=300) as c:
            yield c


def test_a_required_call_after_thinking(hermes: httpx.Client) -> None:
    message = chat(hermes, tool_choice="required", reasoning_budget=2,
                   chat_template_kwargs={"think": True}).json()["choices"][0]["message"]
    assert message["reasoning_content"] and no_wrapper(message["reasoning_content"])
    assert message["tool_calls"][0]["function"]["name"] == "weather"


def test_the_openai_client_reads_native_calls(hermes: httpx.Client) -> None:
    client = hermes
    with openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="none",
                       max_retries=0, timeout=300) as oai:
        choice = {"type": "function", "function": {"name": "weather"}}
        reply = oai.chat.completions.create(model="m", messages=ASK, tools=[WEATHER, CLOCK],
                                            tool_choice=choice, max_tokens=32, temperature=0)
        (call,) = reply.choices[0].message.tool_calls
        assert call.function.name == "weather"
        chunks = oai.chat.completions.create(model="m", messages=ASK, tools=[WEATHER, CLOCK],
                                             tool_choice=choice, max_tokens=32, temperature=0,
                                             stream=True)
        streamed = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
        assert [(t.function.name, t.function.arguments) for t in streamed] == [
            ("weather", call.function.arguments)]


@pytest.mark.parametrize("body", [
    {"messages": ASK + [{"role": "assistant", "tool_calls": [{"function": "weather"}]}]},
    {"messages": ASK + [{"role": "assistant", "tool_calls": ["weather"]}]},
    {"messages": ASK + [{"role": "assistant", "tool_calls": {"id": "x"}}]},
    {"messages": ASK + [{"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"arguments": "{}"}}]}]},
    {"messages": ASK + [{"role": "tool", "tool_call_id": 5, "content": "x"}]},
    {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
    {"tool_choice": {"type": "function", "function": {"name": 5}}},
    {"tools": [WEATHER], "grammar": 'root ::= "x"'},
])
def test_bad_native_tool_requests_are_400(hermes: httpx.Client, body: dict[str, Any]) -> None:
    error_of(chat(hermes, **body), 400, "invalid_request_error")


def test_a_generic_call_cut_short_is_length(client: httpx.Client) -> None:
    body = {"messages": ASK, "tools": [WEATHER], "tool_choice": "required", "max_tokens": 6,
            "temperature": 0}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] is None and "tool_calls" not in choice["message"]
    deltas, finish = deltas_of(client.post("/v1/chat/completions", json={**body, "stream": True}))
    assert finish == "length" and not any(d.get("content") or d.get("tool_calls") for d in deltas)
