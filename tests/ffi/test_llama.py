"""Llama: generate/stream/chat on top of the typed layer, with stop strings and prompt-cache reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from llama_ffi import ContextError, InvalidTokenError, Llama


@pytest.fixture(scope="module")
def llm(model_path: Path) -> Iterator[Llama]:
    with Llama(model_path, n_ctx=256, n_threads=1, seed=42) as instance:
        yield instance


def test_generate_is_greedy_and_repeatable(llm: Llama) -> None:
    first = llm.generate("The capital of France is", max_tokens=8, temperature=0.0)
    assert first.startswith(" Paris")
    assert llm.generate("The capital of France is", max_tokens=8, temperature=0.0) == first  # cached prefix


def test_stream_pieces_join_to_generate(llm: Llama) -> None:
    pieces = list(llm.stream("List three fruits:", max_tokens=12, temperature=0.0))
    assert len(pieces) > 1
    assert "".join(pieces) == llm.generate("List three fruits:", max_tokens=12, temperature=0.0)


def test_stop_strings_are_not_leaked(llm: Llama) -> None:
    full = llm.generate("Count: 1, 2, 3,", max_tokens=16, temperature=0.0)
    assert " 5" in full
    stopped = list(llm.stream("Count: 1, 2, 3,", max_tokens=16, temperature=0.0, stop=[" 5"]))
    text = "".join(stopped)
    assert text == full[: full.index(" 5")]
    assert not any(" 5" in p for p in stopped)


def test_chat(llm: Llama) -> None:
    reply = llm.chat([{"role": "user", "content": "What is 2+2?"}], max_tokens=16, temperature=0.0)
    assert isinstance(reply, str) and "4" in reply and "<|im_end|>" not in reply
    chunks = llm.chat([{"role": "user", "content": "Say hi"}], max_tokens=4, stream=True, temperature=0.0)
    assert not isinstance(chunks, str) and "".join(chunks)


def test_token_prompts_and_limits(llm: Llama) -> None:
    tokens = llm.tokenize("Hello")
    assert llm.detokenize(tokens) == "Hello"
    assert isinstance(llm.generate(tokens, max_tokens=2, temperature=0.0), str)
    with pytest.raises(InvalidTokenError):
        llm.generate([1, 10**7], max_tokens=2)
    with pytest.raises(ContextError):
        llm.generate("word " * 400, max_tokens=2)
    with pytest.raises(ValueError):
        llm.generate("", max_tokens=2)
    with pytest.raises(TypeError):
        llm.generate("x", max_tokens=2, not_a_sampling_option=1)
