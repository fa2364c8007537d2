"""Reasoning in chat completions: <think> blocks split into reasoning_content (streamed or
not), reasoning_format, the thinking budget, enable_thinking in the template, and the history's
reasoning_content, on a server with ``THINKING_TEMPLATE`` (SmolLM2 does not think by itself)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from server_helpers import THINKING_TEMPLATE, error_of, running_server, sse_events

from llamaserver.http._reasoning import ThinkTags, think_tags, with_thinking
from llamaserver.http._think_split import REASONING, ReasoningSplitter, split_text

ASK = [{"role": "user", "content": "What is the capital of France?"}]
TAGS = ThinkTags("<think>", "</think>")
# the model opens and closes its own block (the template did not open one)
OWN_BLOCK = 'root ::= "<think>" [a-z ]{2,8} "</think>\\n" [A-Za-z ]{1,8}'


@pytest.fixture(scope="module")
def thinker() -> Iterator[httpx.Client]:
    with running_server(parallel=2, ctx_size=1024, chat_template=THINKING_TEMPLATE) as running:
        with httpx.Client(base_url=running.url, timeout=300) as c:
            yield c


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={
        "messages": ASK, "max_tokens": 16, "temperature": 0, **body})


def message_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]


def streamed(client: httpx.Client, **body: Any) -> tuple[list[dict[str, Any]], str]:
    events = sse_events(chat(client, stream=True, **body).text)
    assert events[-1] == "[DONE]"
    return ([c["delta"] for e in events[:-1] for c in e["choices"]],
            events[-2]["choices"][0]["finish_reason"])


def joined(deltas: list[dict[str, Any]], key: str) -> str:
    return "".join(d.get(key) or "" for d in deltas)


# ---- the splitter, piece by piece ---------------------------------------------------------

@pytest.mark.parametrize("opened,text,reasoning,content", [
    (True, "Paris is it.\n</think>\n\nParis.", "Paris is it.", "Paris."),
    (False, "  <think>\nhmm</think>Hi", "hmm", "Hi"),
    (False, "No thinking </think> here", "", "No thinking </think> here"),
    (True, "a < b and </th is not the end</think>x", "a < b and </th is not the end", "x"),
])
def test_split_at_every_piece_boundary(opened: bool, text: str, reasoning: str,
                                       content: str) -> None:
    for cut in itertools.combinations(range(1, len(text)), 2):
        pieces = [text[:cut[0]], text[cut[0]:cut[1]], text[cut[1]:]]
        splitter = ReasoningSplitter(TAGS, opened)
        parts = [p for piece in pieces for p in splitter.feed(piece)] + splitter.finish(False)
        assert "".join(t for k, t in parts if k == REASONING) == reasoning
        assert "".join(t for k, t in parts if k != REASONING) == content


def test_a_block_cut_short_keeps_its_reasoning_and_drops_half_a_tag() -> None:
    assert split_text(TAGS, True, "Still thinking </thi", cut=True) == ("Still thinking", "")
    assert split_text(TAGS, True, "Still thinking </thi", cut=False) == (
        "Still thinking </thi", "")
    assert split_text(TAGS, False, "<thi", cut=True) == ("", "")


def test_tags_are_read_from_the_template() -> None:
    assert think_tags(THINKING_TEMPLATE) == TAGS
    assert think_tags("{{ '<|START_THINKING|>' }}...<|END_THINKING|>").start == "<|START_THINKING|>"
    assert think_tags("{% for m in messages %}{{ m.content }}{% endfor %}") is None


def test_a_grammar_of_ours_leaves_room_for_thinking() -> None:
    grammar = 'root ::= "{" item "}"\nitem ::= [a-z]+\n'
    opened = with_thinking(grammar, TAGS, opened=True)
    assert opened.startswith("root ::= think-0 think-gap chat-answer")
    assert 'chat-answer ::= "{" item "}"' in opened
    fresh = with_thinking(grammar, TAGS, opened=False)
    assert '"<think>" think-0' in fresh
    recursive = 'root ::= "(" root? ")"\n'
    assert with_thinking(recursive, TAGS, opened=True) == recursive  # left as it is


# ---- the server --------------------------------------------------------------------------

def test_enable_thinking_reaches_the_template(thinker: httpx.Client) -> None:
    def prompt(**body: Any) -> str:
        response = thinker.post("/apply-template", json={"messages": ASK, **body})
        assert response.status_code == 200, response.text
        return response.json()["prompt"]

    assert prompt().endswith("<|im_start|>assistant\n<think>\n")  # thinks by default
    assert prompt(reasoning_effort="none").endswith("<|im_start|>assistant\n")
    assert prompt(chat_template_kwargs={"enable_thinking": False}).endswith("assistant\n")
    assert prompt(chat_template_kwargs={"enable_thinking": True}).endswith("<think>\n")
    history = ASK + [{"role": "assistant", "content": "Paris.",
                      "reasoning_content": "It is Paris."}, *ASK]
    assert "<think>\nIt is Paris.\n</think>\nParis." in prompt(messages=history)


def test_budget_closes_a_prompt_opened_block_and_the_answer_continues(
        thinker: httpx.Client) -> None:
    body = {"reasoning_budget": 3, "reasoning_budget_message": " Enough.", "ignore_eos": True}
    message = message_of(chat(thinker, **body))
    reasoning = message["reasoning_content"]
    assert reasoning.endswith("Enough.") and len(reasoning) > len("Enough.")
    assert "think>" not in reasoning and "</" not in reasoning
    assert message["content"] and "think>" not in message["content"]

    deltas, finish = streamed(thinker, **body)
    assert finish == "length"
    assert joined(deltas, "reasoning_content") == reasoning
    assert joined(deltas, "content") == message["content"]
    kinds = [k for d in deltas for k in ("reasoning_content", "content") if d.get(k)]
    assert kinds == sorted(kinds, key=lambda k: k == "content")  # reasoning first, then content
    # the end tag came in pieces (several tokens); none of them leaked
    assert not any("<" in (d.get("content") or "") for d in deltas)


def test_a_budget_of_zero_ends_thinking_at_once(thinker: httpx.Client) -> None:
    message = message_of(chat(thinker, reasoning_budget=0, ignore_eos=True, max_tokens=8))
    assert message.get("reasoning_content") is None
    assert message["content"] and "think>" not in message["content"]
    said = message_of(chat(thinker, reasoning_budget=0, reasoning_budget_message="Skip.",
                           max_tokens=8))
    assert said["reasoning_content"] == "Skip."


def test_reasoning_formats(thinker: httpx.Client) -> None:
    body = {"reasoning_budget": 2, "max_tokens": 8}
    split = message_of(chat(thinker, **body))
    raw = message_of(chat(thinker, reasoning_format="none", **body))
    assert "reasoning_content" not in raw
    assert raw["content"].startswith(split["reasoning_content"])
    assert "</think>" in raw["content"]
    legacy = message_of(chat(thinker, reasoning_format="deepseek-legacy", **body))
    assert legacy["reasoning_content"] == split["reasoning_content"]
    assert legacy["content"].startswith("<think>" + split["reasoning_content"])
    assert "</think>" in legacy["content"]
    deltas, _ = streamed(thinker, reasoning_format="deepseek-legacy", **body)
    assert joined(deltas, "content") == legacy["content"]  # inline, as upstream streams it
    assert not joined(deltas, "reasoning_content")


def test_a_block_the_model_opens_itself(thinker: httpx.Client) -> None:
    body = {"chat_template_kwargs": {"enable_thinking": False}, "grammar": OWN_BLOCK}
    message = message_of(chat(thinker, **body))
    assert message["reasoning_content"] and "<" not in message["reasoning_content"]
    assert message["content"] and "think" not in message["content"]
    deltas, _ = streamed(thinker, **body)
    assert joined(deltas, "reasoning_content") == message["reasoning_content"]
    assert joined(deltas, "content") == message["content"]


def test_a_json_answer_after_thinking(thinker: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
              "required": ["city"]}
    message = message_of(chat(thinker, reasoning_budget=2, max_tokens=24, response_format={
        "type": "json_schema", "json_schema": {"schema": schema}}))
    assert message["reasoning_content"]
    assert json.loads(message["content"]) == {"city": "Paris"}


def test_the_openai_client_reads_reasoning(thinker: httpx.Client) -> None:
    with openai.OpenAI(base_url=str(thinker.base_url) + "/v1", api_key="none",
                       max_retries=0, timeout=300) as oai:
        extra = {"reasoning_budget": 2}
        reply = oai.chat.completions.create(model="m", messages=ASK, max_tokens=8,
                                            temperature=0, extra_body=extra)
        reasoning = reply.choices[0].message.model_extra["reasoning_content"]
        assert reasoning
        chunks = oai.chat.completions.create(model="m", messages=ASK, max_tokens=8,
                                             temperature=0, extra_body=extra, stream=True)
        streamed_reasoning = "".join((c.choices[0].delta.model_extra or {}).get(
            "reasoning_content") or "" for c in chunks if c.choices)
        assert streamed_reasoning == reasoning


def test_server_defaults() -> None:
    settings = {"reasoning": "off", "reasoning_budget": 0, "reasoning_format": "none",
                "reasoning_budget_message": "No time."}
    with running_server(parallel=1, ctx_size=512, chat_template=THINKING_TEMPLATE,
                        **settings) as running:
        with httpx.Client(base_url=running.url, timeout=300) as c:
            off = c.post("/apply-template", json={"messages": ASK}).json()["prompt"]
            assert off.endswith("<|im_start|>assistant\n")  # -rea off: enable_thinking false
            # the request turns thinking on; the server's budget of 0 closes it at once, and
            # its reasoning format leaves the text raw
            on = {"chat_template_kwargs": {"enable_thinking": True}, "max_tokens": 8}
            message = message_of(chat(c, **on))
            assert message["content"].startswith("No time.</think>")
            assert "reasoning_content" not in message


def test_completion_is_untouched(thinker: httpx.Client) -> None:
    grammar = 'root ::= "<think>ab</think>cd"'
    body = thinker.post("/completion", json={"prompt": "Hi", "grammar": grammar,
                                             "n_predict": 16}).json()
    assert body["content"] == "<think>ab</think>cd" and "reasoning_content" not in body


@pytest.mark.parametrize("body", [
    {"reasoning_format": "deepthink"},
    {"reasoning_format": 1},
    {"reasoning_budget": "5"},
    {"reasoning_budget": -2},
    {"reasoning_budget": 2**40},
    {"thinking_budget_tokens": 2**31},
    {"reasoning_budget_message": 7},
    {"reasoning_effort": 3},
    {"chat_template_kwargs": {"enable_thinking": "false"}},
    {"messages": ASK + [{"role": "assistant", "content": "x", "reasoning_content": 5}], },
    {"messages": ASK + [{"role": "assistant", "content": "x",
                         "reasoning_content": ["a"]}]},
])
def test_bad_reasoning_fields_are_400(thinker: httpx.Client, body: dict[str, Any]) -> None:
    error_of(chat(thinker, **body), 400, "invalid_request_error")


def test_lone_surrogates_in_reasoning_are_400(thinker: httpx.Client) -> None:
    raw = ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", '
           '"content": "x", "reasoning_content": "\\ud800"}], "max_tokens": 4}')
    response = thinker.post("/v1/chat/completions", content=raw,
                            headers={"Content-Type": "application/json"})
    assert "reasoning_content" in error_of(response, 400, "invalid_request_error")["message"]
