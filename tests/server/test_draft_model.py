"""Speculative decoding with a draft model (-md): the output is the default model's token for
token, whatever the draft model guesses (itself: every draft taken; a random model with the
same vocabulary: nearly every draft rejected), and a draft model whose vocabulary differs is
a start-up error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from engine_helpers import make_engine, request

PROMPTS = [
    "Write a list of fruits:\n1.",
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):",
    "Once upon a time",
]


@pytest.fixture(scope="module")
async def engines(model_path: Path, draft_model_path: Path):
    same = make_engine(ctx_size=1024, parallel=2, threads=1, model_draft=model_path,
                       spec_draft_n_max=8)
    random = make_engine(ctx_size=1024, parallel=2, threads=1, model_draft=draft_model_path,
                         spec_draft_n_max=4)
    await same.start()
    await random.start()
    yield same, random
    await random.stop()
    await same.stop()


async def _run(engine, prompt: str, spec: bool, **kw):
    req = request(engine, prompt, 40, ignore_eos=True, speculative=spec, cache_prompt=False,
                  **kw)
    return await engine.submit(req).result()


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_greedy_output_is_the_models_whatever_the_draft(engines, prompt: str) -> None:
    same, random = engines
    plain = await _run(same, prompt, False)
    assert plain.timings.draft_n == 0
    taken = await _run(same, prompt, True)
    assert taken.tokens == plain.tokens
    # the model drafting for itself: every draft is what it would write
    assert taken.timings.draft_n_accepted == taken.timings.draft_n > 20
    rejected = await _run(random, prompt, True)
    assert rejected.tokens == plain.tokens
    assert rejected.timings.draft_n > 0
    assert rejected.timings.draft_n_accepted < rejected.timings.draft_n / 2


async def test_sampled_output_is_identical_with_a_seed(engines) -> None:
    same, _ = engines
    kw = {"temperature": 0.9, "seed": 77}
    for prompt in PROMPTS[:2]:
        plain = await _run(same, prompt, False, **kw)
        spec = await _run(same, prompt, True, **kw)
        assert spec.tokens == plain.tokens and spec.timings.draft_n > 0


async def test_drafting_beside_other_slots(engines) -> None:
    same, _ = engines
    alone = [(await _run(same, p, False)).tokens for p in PROMPTS[:2]]
    together = await asyncio.gather(*(_run(same, p, True) for p in PROMPTS[:2]))
    assert [r.tokens for r in together] == alone
    assert all(r.timings.draft_n_accepted > 0 for r in together)


async def test_a_draft_model_of_another_vocabulary_is_refused(reranker_path: Path) -> None:
    engine = make_engine(ctx_size=512, parallel=1, threads=1, model_draft=reranker_path)
    with pytest.raises(ValueError, match="vocabulary"):
        await engine.start()
    await engine.stop()
