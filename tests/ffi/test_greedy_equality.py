"""Greedy generation through llama_ffi matches upstream's own llama-simple, token for token."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import llama_ffi
from llama_ffi import Batch, Context, SamplerChain, SamplerParams

LLAMA_SIMPLE = Path(llama_ffi.__file__).parent / "_native" / "bin" / "llama-simple"
N_PREDICT = 24


def llama_simple(model_path: Path, prompt: str) -> bytes:
    if not LLAMA_SIMPLE.is_file():
        pytest.skip("llama_ffi/_native/bin/llama-simple was not built")
    # llama-simple has no thread flag and uses 4; on a small, busy machine spinning
    # threads crawl, so OpenMP is capped at one thread (the arithmetic is the same)
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    done = subprocess.run(
        [str(LLAMA_SIMPLE), "-m", str(model_path), "-n", str(N_PREDICT), prompt],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def ours(model: llama_ffi.Model, prompt: str) -> bytes:
    """What llama-simple prints: the prompt's pieces, then each generated piece, then a newline."""
    vocab = model.vocab
    tokens = vocab.tokenize(prompt, add_special=True, parse_special=True)
    out = [vocab.token_to_piece(t, special=True) for t in tokens]
    with Context(model, n_ctx=256, n_batch=256, n_threads=1) as ctx, Batch(256) as batch, SamplerChain(
        model, SamplerParams(temperature=0.0)
    ) as chain:
        for pos, tok in enumerate(tokens):
            idx = batch.add(tok, pos, 0, pos == len(tokens) - 1)
        ctx.decode(batch)
        pos = len(tokens)
        for _ in range(N_PREDICT):
            tok = chain.sample(ctx, idx)
            if vocab.is_eog(tok):
                break
            out.append(vocab.token_to_piece(tok, special=True))
            batch.clear()
            idx = batch.add(tok, pos, 0, True)
            ctx.decode(batch)
            pos += 1
    return b"".join(out) + b"\n"


@pytest.mark.parametrize(
    "prompt",
    ["The capital of France is", "Once upon a time, in a small village by the sea,"],
)
def test_greedy_matches_llama_simple(model: llama_ffi.Model, model_path: Path, prompt: str) -> None:
    expected = llama_simple(model_path, prompt)
    assert expected.startswith(prompt.encode())
    assert len(expected) > len(prompt) + 20  # it did generate
    assert ours(model, prompt) == expected
