"""Fixtures for the llama_ffi tests: a small context, and prompt/generation loops on it."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from llama_ffi import Batch, Context, Model, SamplerChain

N_CTX = 512


@pytest.fixture()
def ctx(model: Model) -> Iterator[Context]:
    with Context(model, n_ctx=N_CTX, n_batch=N_CTX, n_seq_max=4, n_threads=1) as context:
        yield context


def _prefill(ctx: Context, tokens: list[int], seq: int = 0) -> int:
    """Decode ``tokens`` into ``seq`` (emptied first); returns the batch index of the last token."""
    ctx.seq_rm(seq)
    with Batch(len(tokens)) as batch:
        for pos, tok in enumerate(tokens):
            idx = batch.add(tok, pos, seq, pos == len(tokens) - 1)
        ctx.decode(batch)
    return idx


def _generate(ctx: Context, chain: SamplerChain, prompt: list[int], n: int, seq: int = 0) -> list[int]:
    """Generate up to ``n`` tokens after ``prompt`` in sequence ``seq`` (stops at end of generation)."""
    vocab = ctx.model.vocab
    idx = _prefill(ctx, prompt, seq)
    out: list[int] = []
    with Batch(1) as batch:
        for pos in range(len(prompt), len(prompt) + n):
            tok = chain.sample(ctx, idx)
            if vocab.is_eog(tok):
                break
            out.append(tok)
            batch.clear()
            idx = batch.add(tok, pos, seq, True)
            ctx.decode(batch)
    return out


@pytest.fixture()
def prefill() -> Callable[..., int]:
    return _prefill


@pytest.fixture()
def generate() -> Callable[..., list[int]]:
    return _generate
