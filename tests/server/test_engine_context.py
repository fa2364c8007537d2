"""A slot's context filling up: context shift with n_keep, the -1 limit, prompt truncation."""

from __future__ import annotations

import pytest
from engine_helpers import make_engine, request

from llamaserver.engine import FinalEvent, InvalidRequest, PromptTooLong


@pytest.fixture(scope="module")
async def engine():
    # libllama rounds a slot's KV stream up to 256 cells: one slot of 256 tokens.
    eng = make_engine(ctx_size=256, parallel=1, batch_size=256, threads=1)
    await eng.start()
    assert eng.n_ctx_slot == 256
    yield eng
    await eng.stop()


def greedy(engine, prompt, n_predict, **kw):
    return request(engine, prompt, n_predict, **kw)


PROMPT = "Chapter one. The old lighthouse keeper climbed the stairs every night and"


async def test_context_shift_keeps_n_keep_and_continues(engine):
    n_prompt = len(engine.vocab.tokenize(PROMPT))
    n_predict = engine.n_ctx_slot - n_prompt + 60  # past the end of the slot's context
    text = []
    final = None
    async for ev in engine.submit(greedy(engine, PROMPT, n_predict, n_keep=8, ignore_eos=True)):
        if isinstance(ev, FinalEvent):
            final = ev
        else:
            text.append(ev.text)
    assert final is not None
    assert final.tokens_predicted == n_predict and final.stopped_limit
    assert final.truncated  # the context was shifted
    assert "".join(text) == final.content
    cache = engine._worker.slots[0].cache.tokens
    # the shifted sequence still starts with the kept prompt tokens, and fits its context
    assert cache[:8] == engine.vocab.tokenize(PROMPT)[:8]
    assert len(cache) < engine.n_ctx_slot
    assert engine._worker.ctx.seq_pos_max(0) == len(cache) - 1  # positions contiguous


async def test_unlimited_n_predict_stops_at_context_end(engine):
    final = await engine.submit(greedy(engine, PROMPT, -1, ignore_eos=True)).result()
    n_prompt = len(engine.vocab.tokenize(PROMPT))
    assert final.stopped_limit and final.truncated and not final.stopped_eos
    assert final.tokens_predicted == engine.n_ctx_slot - n_prompt


async def test_long_prompt_is_truncated_keeping_n_keep(engine):
    words = " ".join(f"item{i}" for i in range(400))
    tokens = engine.vocab.tokenize(words)
    assert len(tokens) > engine.n_ctx_slot
    final = await engine.submit(greedy(engine, tokens, 2, n_keep=5)).result()
    assert final.truncated
    assert final.tokens_evaluated < engine.n_ctx_slot
    cache = engine._worker.slots[0].cache.tokens
    assert cache[:5] == tokens[:5]  # the first n_keep tokens survive
    assert cache[final.tokens_evaluated - 10:final.tokens_evaluated] == tokens[-10:]


async def test_prompt_that_cannot_fit_is_invalid(engine):
    tokens = engine.vocab.tokenize(" ".join(f"item{i}" for i in range(400)))
    with pytest.raises(InvalidRequest):
        engine.submit(greedy(engine, tokens, 2, n_keep=-1))
    with pytest.raises(InvalidRequest):
        engine.submit(greedy(engine, tokens, 2, n_keep=engine.n_ctx_slot - 1))


async def test_prompt_too_long_without_truncation(engine):
    # today's llama-server: no truncation, an error that says how long the prompt was
    tokens = engine.vocab.tokenize(" ".join(f"item{i}" for i in range(400)))
    with pytest.raises(PromptTooLong) as info:
        engine.submit(greedy(engine, tokens, 2, truncate=False))
    assert info.value.n_prompt_tokens == len(tokens) and info.value.n_ctx == engine.n_ctx_slot
    short = await engine.submit(greedy(engine, PROMPT, 2, truncate=False)).result()
    assert short.tokens_predicted == 2 and not short.truncated
