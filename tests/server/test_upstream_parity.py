"""Greedy answers over HTTP equal upstream llama-server's, same model and same build.

Upstream's server comes from the same build (`python build_native.py --with-server` stages
`llama_ffi/_native/bin/llama-server`), so both sides run the same kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import PARALLEL, upstream_server

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
