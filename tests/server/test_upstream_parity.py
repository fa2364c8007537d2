"""Greedy answers over HTTP equal upstream llama-server's, same model and same build.

Upstream's server comes from the same build (`python build_native.py --with-server` stages
`llama_ffi/_native/bin/llama-server`), so both sides run the same kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import PARALLEL, named_sse_events, upstream_server

PROMPTS = ["The capital of France is", "Here is a list of three fruits:", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def upstream(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    args = ["-m", str(model_path), "-c", "4096", "-np", str(PARALLEL)]
    with upstream_server(args, tmp_path_factory.mktemp("upstream")) as client:
        # the first request pays one-time costs (graph reservation, page faults of the weights)
        client.post("/completion", json={"prompt": "Hi", "n_predict": 1})
        yield client


@pytest.mark.parametrize("prompt", PROMPTS)
def test_completion_equals_upstream(client: httpx.Client, upstream: httpx.Client, prompt: str) -> None:
    body = {"prompt": prompt, "n_predict": 24, "temperature": 0, "cache_prompt": False}
    theirs = upstream.post("/completion", json=body).json()
    ours = client.post("/completion", json=body).json()
    assert ours["content"] == theirs["content"]
    assert ours["tokens_predicted"] == theirs["tokens_predicted"]
    # today's upstream reports why it stopped as `stop_type`; the seed's booleans say the same
    assert ours["stopped_eos"] == (theirs["stop_type"] == "eos")
    assert ours["stopped_limit"] == (theirs["stop_type"] == "limit")


@pytest.mark.parametrize("body", [
    {"content": "Hello, world! Ünïcödé and 数字 123"},
    {"content": "<|im_start|>user\nhi<|im_end|>", "add_special": True},
    {"content": "  leading spaces\n\nnewlines", "with_pieces": True},
])
def test_tokenize_equals_upstream(client: httpx.Client, upstream: httpx.Client, body: dict) -> None:
    assert client.post("/tokenize", json=body).json() == upstream.post("/tokenize", json=body).json()


def test_detokenize_equals_upstream(client: httpx.Client, upstream: httpx.Client) -> None:
    tokens = client.post("/tokenize", json={"content": "Round trip: café, naïve, 東京"}).json()["tokens"]
    body = {"tokens": tokens}
    assert client.post("/detokenize", json=body).json() == upstream.post("/detokenize", json=body).json()


@pytest.mark.parametrize("question", ["What is the capital of France?", "Name two colours."])
def test_chat_equals_upstream(client: httpx.Client, upstream: httpx.Client, question: str) -> None:
    body = {"messages": [{"role": "system", "content": "You are brief."},
                         {"role": "user", "content": question}],
            # a prefix cached by earlier tests was computed in other batches, which moves
            # the logits a little: compare fresh evaluations on both sides
            "max_tokens": 24, "temperature": 0, "cache_prompt": False}
    theirs = upstream.post("/v1/chat/completions", json=body).json()
    ours = client.post("/v1/chat/completions", json=body).json()
    assert ours["choices"][0]["message"]["content"] == theirs["choices"][0]["message"]["content"]
    assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"]
    assert ours["usage"] == theirs["usage"]


# ---- Anthropic's /v1/messages and OpenAI's /v1/responses: the same fields, the same meaning --

HELLO = [{"role": "user", "content": "Say hello to Ada."}]
# upstream closes a connection after an event stream: a streamed request gets its own
ONE_SHOT = {"Connection": "close"}


def _stream_names(client: httpx.Client, path: str, body: dict[str, Any]
                  ) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Event names in order (repeats collapsed) and the first data of each name."""
    events = named_sse_events(client.post(path, json={**body, "stream": True},
                                          headers=ONE_SHOT).text)
    names: list[str] = []
    first: dict[str, dict[str, Any]] = {}
    for name, data in events:
        if not names or names[-1] != name:
            names.append(name)
        first.setdefault(name, data)
    return names, first


def _keys_cover(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Every field upstream sends is in ours (we may send more of the vendor's fields)."""
    assert set(theirs) <= set(ours), set(theirs) - set(ours)


def test_messages_like_upstream(client: httpx.Client, upstream: httpx.Client) -> None:
    body = {"model": "m", "max_tokens": 4, "system": "You are brief.", "messages": HELLO,
            "temperature": 0}
    theirs = upstream.post("/v1/messages", json=body).json()
    ours = client.post("/v1/messages", json=body).json()
    _keys_cover(ours, theirs)
    for key in ("type", "role", "stop_reason", "stop_sequence"):
        assert ours[key] == theirs[key], key
    assert [b["type"] for b in ours["content"]] == [b["type"] for b in theirs["content"]]
    assert set(ours["usage"]) == set(theirs["usage"])
    counted = {c.post("/v1/messages/count_tokens", json=body).json()["input_tokens"]
               for c in (client, upstream)}
    # the same template and tokenizer: the same prompt, cached or not
    assert {u["input_tokens"] + u["cache_read_input_tokens"]
            for u in (ours["usage"], theirs["usage"])} == counted
    assert ours["usage"]["output_tokens"] == theirs["usage"]["output_tokens"] == 4

    their_names, their_first = _stream_names(upstream, "/v1/messages", body)
    our_names, our_first = _stream_names(client, "/v1/messages", body)
    assert our_names == their_names == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    for name in our_names:
        _keys_cover(our_first[name], their_first[name])
    _keys_cover(our_first["message_start"]["message"], their_first["message_start"]["message"])
    assert our_first["message_delta"]["delta"] == their_first["message_delta"]["delta"]


def test_responses_like_upstream(client: httpx.Client, upstream: httpx.Client) -> None:
    body = {"model": "m", "instructions": "You are brief.", "input": "Say hello to Ada.",
            "max_output_tokens": 4, "temperature": 0}
    theirs = upstream.post("/v1/responses", json=body).json()
    ours = client.post("/v1/responses", json=body).json()
    _keys_cover(ours, theirs)
    assert ours["object"] == theirs["object"] == "response"
    # (status: upstream says "completed" of an answer cut short, we say "incomplete" as OpenAI)
    (our_item,), (their_item,) = ours["output"], theirs["output"]
    _keys_cover(our_item, their_item)
    assert our_item["type"] == their_item["type"] == "message"
    _keys_cover(our_item["content"][0], their_item["content"][0])
    _keys_cover(ours["usage"], theirs["usage"])
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert ours["usage"][key] == theirs["usage"][key], key
    assert client.post("/v1/responses/input_tokens", json=body).json()["input_tokens"] == \
        ours["usage"]["input_tokens"]

    their_names, their_first = _stream_names(upstream, "/v1/responses", body)
    our_names, our_first = _stream_names(client, "/v1/responses", body)
    assert our_names == their_names
    assert our_names[0] == "response.created" and our_names[-1] == "response.completed"
    for name in our_names:
        _keys_cover(our_first[name], their_first[name])
