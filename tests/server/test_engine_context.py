"""A slot's context filling up: context shift with n_keep, the -1 limit, prompt truncation."""

from __future__ import annotations

import pytest

from llama_ffi import SamplerParams
from llamaserver.engine import Engine, FinalEvent, GenerationRequest, InvalidRequest
from llamaserver.settings import ServerSettings


@pytest.fixture(scope="module")
async def engine():
    # libllama rounds a slot's KV stream up to 256 cells: one slot of 256 tokens.
    eng = Engine(ServerSettings(ctx_size=256, parallel=1, batch_size=256, threads=1))
    await eng.start()
    assert eng.n_ctx_slot == 256
    yield eng
    await eng.stop()


def greedy(prompt, n_predict, **kw) -> GenerationRequest:
    return GenerationRequest(prompt, SamplerParams(temperature=0.0), n_predict=n_predict, **kw)


PROMPT = "Chapter one. The old lighthouse keeper climbed the stairs every night and"


async def test_context_shift_keeps_n_keep_and_continues(engine):
    n_prompt = len(engine.vocab.tokenize(PROMPT))
    n_predict = engine.n_ctx_slot - n_prompt + 60  # past the end of the slot's context
    text = []
    final = None
    async for ev in engine.submit(greedy(PROMPT, n_predict, n_keep=8, ignore_eos=True)):
        if isinstance(ev, FinalEvent):
            final = ev
        else:
            text.append(ev.text)
    assert final is not None
    assert final.tokens_predicted == n_predict and final.stopped_limit
    assert final.truncated  # the context was shifted
    assert "".join(text) == final.content
    slot = engine._worker.slots[0]
    # the shifted sequence still starts with the kept prompt tokens, and fits its context
    assert slot.cache[:8] == engine.vocab.tokenize(PROMPT)[:8]
    assert len(slot.cache) < engine.n_ctx_slot
    assert engine._worker.ctx.seq_pos_max(0) == len(slot.cache) - 1  # positions contiguous


async def test_unlimited_n_predict_stops_at_context_end(engine):
    final = await engine.submit(greedy(PROMPT, -1, ignore_eos=True)).result()
    n_prompt = len(engine.vocab.tokenize(PROMPT))
    assert final.stopped_limit and final.truncated and not final.stopped_eos
    assert final.tokens_predicted == engine.n_ctx_slot - n_prompt


async def test_long_prompt_is_truncated_keeping_n_keep(engine):
    words = " ".join(f"item{i}" for i in range(400))
    tokens = engine.vocab.tokenize(words)
    assert len(tokens) > engine.n_ctx_slot
    final = await engine.submit(greedy(tokens, 2, n_keep=5)).result()
    assert final.truncated
    assert final.tokens_evaluated < engine.n_ctx_slot
    cache = engine._worker.slots[0].cache
    assert cache[:5] == tokens[:5]  # the first n_keep tokens survive
    assert cache[final.tokens_evaluated - 10:final.tokens_evaluated] == tokens[-10:]


async def test_prompt_that_cannot_fit_is_invalid(engine):
    tokens = engine.vocab.tokenize(" ".join(f"item{i}" for i in range(400)))
    with pytest.raises(InvalidRequest):
        engine.submit(greedy(tokens, 2, n_keep=-1))
    with pytest.raises(InvalidRequest):
        engine.submit(greedy(tokens, 2, n_keep=engine.n_ctx_slot - 1))
