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
    # slots of 1024 cells holding ~220: the cells travel through host memory (state get/set)
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


async def test_a_slot_that_fills_its_stream_is_copied_whole() -> None:
    # slots of 256 cells holding ~220: the whole KV stream is copied (seq_cp across streams)
    eng = make_engine(ctx_size=512, parallel=2, threads=1, cache_ram=0)
    await eng.start()
    try:
        await eng.submit(request(eng, DOC + "Question: what needs repair?", 4,
                                 id_slot=0)).result()
        prompt = DOC + "Question: who reported?"
        reused = await eng.submit(request(eng, prompt, 12, id_slot=1)).result()
        assert reused.timings.prompt_n < 20
        fresh = await eng.submit(request(eng, prompt, 12, id_slot=1,
                                         cache_prompt=False)).result()
        assert reused.tokens == fresh.tokens
        # and from the copy on to a third use, before and after its stream has settled
        again = await eng.submit(request(eng, DOC + "Question: when?", 8, id_slot=0)).result()
        assert again.timings.prompt_n < 20
    finally:
        await eng.stop()


def test_cells_copied_in_this_step_are_not_read_before_the_copy_is_made(model) -> None:
    """libllama moves a stream's buffer at the next decode: a sequence filled by seq_cp must not
    be read with state_seq_get (host memory) before that; it is copied on by seq_cp too."""
    from llama_ffi import Batch, Context

    from llamaserver.engine._prefix_cache import PrefixCache
    from llamaserver.engine._seqcache import SequenceCache

    vocab = model.vocab
    tokens = vocab.tokenize(DOC + DOC, add_special=True)[:300]
    with Context(model, n_ctx=3 * 512, n_seq_max=3, kv_unified=False, n_threads=1) as ctx, \
            Batch(512) as batch:
        index = PrefixCache(ctx, 0)
        a, b, c = (SequenceCache(ctx, seq, index) for seq in range(3))
        batch.add_tokens(tokens, 0, 0, logits_last=False)
        ctx.decode(batch)
        a.adopt(tokens)
        index.transfer(a, b, 100)   # 300 of 512 cells: the whole stream, at the next decode
        index.transfer(b, c, 100)   # b holds 100: would go through host memory if settled
        batch.clear()
        row = batch.add(tokens[100], 100, 2, True)
        ctx.decode(batch)
        copied = ctx.logits_list(row)
        ctx.seq_rm(2, -1, -1)
        batch.clear()
        batch.add_tokens(tokens[:101], 0, 2, logits_last=True)
        ctx.decode(batch)
        fresh = ctx.logits_list(100)
    # batch shapes round differently (under 1); cells read before the copy: off by ~25
    assert max(abs(x - y) for x, y in zip(copied, fresh)) < 2.0
    assert copied.index(max(copied)) == fresh.index(max(fresh))
