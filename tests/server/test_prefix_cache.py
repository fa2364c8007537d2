"""The prompt cache shared across slots: a prefix computed in one slot serves another (a copy
of its cells), one about to be overwritten is kept in host memory and restored, and a reused
prefix gives the same tokens as evaluating the whole prompt."""

from __future__ import annotations

import pytest
from engine_helpers import make_engine, request

DOC = ("Minutes of the harbour committee. The committee met on Tuesday to discuss the repair "
       "of the north pier, the dredging of the channel, the new fees for visiting yachts and "
       "the lighting of the quay. The treasurer reported that the repair fund holds enough for "
       "the pier but not for the channel, and proposed that the fees rise by a tenth. ") * 3
OTHER = ("A recipe for bread: mix flour, water, salt and yeast; knead for ten minutes; let it "
         "rise for an hour; shape the loaf; bake it in a hot oven until it sounds hollow. ") * 3


@pytest.fixture(scope="module")
async def engine():
    eng = make_engine(ctx_size=2048, parallel=2, threads=1, cache_ram=64)
    await eng.start()
    yield eng
    await eng.stop()


async def run(engine, prompt: str, slot: int, *, cache: bool = True):
    req = request(engine, prompt, 12, id_slot=slot, cache_prompt=cache)
    return await engine.submit(req).result()


def n_tokens(engine, text: str) -> int:
    return len(engine.vocab.tokenize_prompt(text, add_special=True, parse_special=True)[0])


async def test_another_slots_prefix_is_copied(engine) -> None:
    first = await run(engine, DOC + "Question: what needs repair?", 0)
    assert first.timings.prompt_n >= n_tokens(engine, DOC)
    before = engine.metrics()
    prompt = DOC + "Question: who reported on the fund?"
    reused = await run(engine, prompt, 1)
    after = engine.metrics()
    # only the question was evaluated: the document's cells came from slot 0
    assert reused.timings.prompt_n < 20
    assert after.prompt_cache_hits == before.prompt_cache_hits + 1
    assert (after.prompt_cache_tokens_reused - before.prompt_cache_tokens_reused
            >= n_tokens(engine, DOC) - 2)
    fresh = await run(engine, prompt, 1, cache=False)
    assert fresh.timings.prompt_n == n_tokens(engine, prompt)
    assert reused.tokens == fresh.tokens


async def test_overwritten_prefix_comes_back_from_host_memory(engine) -> None:
    prompt = OTHER + "How long does the dough rise?"
    await run(engine, OTHER + "What goes in the dough?", 0)
    await run(engine, DOC + "Question: what about the yachts?", 0)  # overwrites the recipe
    # slot 1 still holds the document; the recipe is only in host memory now
    assert engine.metrics().prompt_cache_host_entries >= 1
    assert engine.metrics().prompt_cache_host_bytes > 0
    restored = await run(engine, prompt, 0)
    assert restored.timings.prompt_n < 20
    fresh = await run(engine, prompt, 1, cache=False)
    assert restored.tokens == fresh.tokens


async def test_without_cache_prompt_nothing_is_taken(engine) -> None:
    before = engine.metrics().prompt_cache_hits
    final = await run(engine, DOC + "Question: when did they meet?", 1, cache=False)
    assert final.timings.prompt_n == n_tokens(engine, DOC + "Question: when did they meet?")
    assert engine.metrics().prompt_cache_hits == before


async def test_a_shifted_sequence_offers_only_its_exact_prefix() -> None:
    # one slot of 256 cells: a long generation shifts it; what it offers must still be exact
    eng = make_engine(ctx_size=512, parallel=2, batch_size=256, threads=1, cache_ram=0)
    await eng.start()
    try:
        prompt = OTHER
        await eng.submit(request(eng, prompt, 230, id_slot=0, n_keep=4,
                                 ignore_eos=True)).result()
        assert eng._worker.slots[0].cache.shifted
        again = await eng.submit(request(eng, prompt + "Then", 8, id_slot=1)).result()
        fresh = await eng.submit(request(eng, prompt + "Then", 8, id_slot=1,
                                         cache_prompt=False)).result()
        assert again.tokens == fresh.tokens
        assert again.timings.prompt_n <= fresh.timings.prompt_n
    finally:
        await eng.stop()
