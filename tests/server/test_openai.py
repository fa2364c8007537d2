"""The OpenAI API through the official ``openai`` client, against real hypercorn."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from server_helpers import MODEL_ALIAS, error_of, sse_events

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url + "/v1", api_key="sk-no-key-required",
                       max_retries=0, timeout=120) as c:
        yield c


def test_models(oai: openai.OpenAI) -> None:
    models = oai.models.list()
    assert [m.id for m in models.data] == [MODEL_ALIAS]


def test_chat(oai: openai.OpenAI) -> None:
    # without the cache: cells another request computed in a larger batch round differently
    # (ggml's CPU kernels), enough to flip this near-tie of the tiny model
    r = oai.chat.completions.create(model="gpt-3.5-turbo", messages=MESSAGES, max_tokens=8,
                                    temperature=0, extra_body={"cache_prompt": False})
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "gpt-3.5-turbo"
    (choice,) = r.choices
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert "Paris" in choice.message.content


def test_chat_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="x", messages=MESSAGES, max_tokens=8,
                                         temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    full = oai.chat.completions.create(model="x", messages=MESSAGES, max_tokens=8,
                                       temperature=0)
    assert text == full.choices[0].message.content


def test_chat_n_choices_and_logprobs(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="x", messages=MESSAGES, max_tokens=4, n=2,
                                    seed=7, logprobs=True, top_logprobs=2)
    assert [c.index for c in r.choices] == [0, 1]
    for choice in r.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        entry = choice.logprobs.content[0]
        assert isinstance(entry.token, str) and len(entry.top_logprobs) <= 2
        assert entry.top_logprobs[0].logprob <= 0


def test_chat_json_response_format(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Give me a JSON object"}],
        max_tokens=48, temperature=0, response_format={"type": "json_object"})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
    else:
        assert (r.choices[0].message.content or "").lstrip().startswith("{")


def test_chat_json_schema_response_format(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "boolean"}},
              "required": ["answer"], "additionalProperties": False}
    r = oai.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Is Paris in France?"}],
        max_tokens=32, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a",
                                                                "schema": schema}})
    assert isinstance(json.loads(r.choices[0].message.content or "")["answer"], bool)


def test_chat_llama_cpp_options_pass_through(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="x", messages=MESSAGES, max_tokens=4,
                                    extra_body={"grammar": 'root ::= "Paris"',
                                                "mirostat": 2})
    assert r.choices[0].message.content == "Paris"


def test_completions(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="davinci-002", prompt="I believe the meaning of life is",
                               max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.usage is not None and r.usage.completion_tokens == 8
    assert r.choices[0].finish_reason == "length"


def test_completions_stream(oai: openai.OpenAI) -> None:
    prompt = "I believe the meaning of life is"
    chunks = list(oai.completions.create(model="x", prompt=prompt, max_tokens=8,
                                         temperature=0, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    full = oai.completions.create(model="x", prompt=prompt, max_tokens=8, temperature=0)
    assert text == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_completions_several_prompts_and_echo(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="x", prompt=["One, two,", "A, B,"], max_tokens=3,
                               temperature=0, echo=True, logprobs=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text.startswith("One, two,")
    assert r.choices[1].text.startswith("A, B,")
    assert r.choices[0].logprobs is not None and len(r.choices[0].logprobs.tokens or []) == 3


def test_embeddings(oai: openai.OpenAI) -> None:
    r = oai.embeddings.create(model="x", input=["hello", "world"])  # base64 on the wire
    assert [d.index for d in r.data] == [0, 1]
    vec = r.data[0].embedding
    assert len(vec) == 576
    assert abs(sum(v * v for v in vec) - 1.0) < 1e-3
    floats = oai.embeddings.create(model="x", input="hello", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vec, abs=1e-6)


def test_raw_stream_ends_with_done(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 3,
                                                  "stream": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"


def test_raw_stream_with_two_choices(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 3,
                                                  "stream": True, "n": 2})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    finished = {c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"]}
    assert finished == {0, 1}


def test_openai_errors(client: httpx.Client, oai: openai.OpenAI) -> None:
    error_of(client.post("/v1/chat/completions", json={"messages": []}), 400,
             "invalid_request_error")
    error_of(client.post("/v1/chat/completions", json={"messages": [{"content": "x"}]}), 400,
             "invalid_request_error")
    error_of(client.post("/v1/chat/completions", json={"messages": MESSAGES, "n": 0}), 400,
             "invalid_request_error")
    error_of(client.post("/v1/chat/completions", json={
        "messages": MESSAGES, "response_format": {"type": "xml"}}), 400,
        "invalid_request_error")
    error_of(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}), 400,
        "invalid_request_error")  # media on a server without a projector
    error_of(client.post("/v1/completions", json={"prompt": [[1.5], "x"]}), 400,
             "invalid_request_error")
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="x", messages=MESSAGES, max_tokens=-5)
    assert info.value.status_code == 400


def test_apply_template(client: httpx.Client) -> None:
    prompt = client.post("/apply-template", json={"messages": MESSAGES}).json()["prompt"]
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
