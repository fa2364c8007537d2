"""Speculative decoding from n-grams of the prompt and the text so far: the output is the
same token for token, greedy or sampled with a seed, alone or beside other slots."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from engine_helpers import make_engine, request
from server_helpers import Running, running_server

TEXT = ("The river runs past the old mill, under the stone bridge and into the valley, "
        "where the farmers keep their sheep. ")
PROMPTS = [
    f"Repeat this text exactly:\n{TEXT * 2}\nRepeated:\n",
    "Count: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):",
    "Once upon a time",
]


@pytest.fixture(scope="module")
async def engine():
    eng = make_engine(ctx_size=2048, parallel=4, threads=1, spec_type=["ngram-simple"],
                      spec_draft_n_max=8)
    await eng.start()
    yield eng
    await eng.stop()


async def _tokens(engine, prompt: str, spec: bool, **kw) -> tuple[list[int], int, int]:
    final = await engine.submit(request(engine, prompt, 48, ignore_eos=True, speculative=spec,
                                        cache_prompt=False, **kw)).result()
    return final.tokens, final.timings.draft_n, final.timings.draft_n_accepted


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_greedy_output_is_identical(engine, prompt: str) -> None:
    plain, n_plain, _ = await _tokens(engine, prompt, False)
    spec, drafted, accepted = await _tokens(engine, prompt, True)
    assert spec == plain
    assert n_plain == 0
    if prompt is PROMPTS[0]:  # the repeated text is found and taken
        assert drafted > 0 and accepted > 16


async def test_sampled_output_is_identical_with_a_seed(engine) -> None:
    kw = {"temperature": 0.9, "seed": 1234}
    for prompt in PROMPTS[:2]:
        plain, _, _ = await _tokens(engine, prompt, False, **kw)
        spec, drafted, _ = await _tokens(engine, prompt, True, **kw)
        assert spec == plain and drafted > 0


async def test_speculating_beside_other_slots(engine) -> None:
    alone = [(await _tokens(engine, p, False))[0] for p in PROMPTS]
    results = await asyncio.gather(*(_tokens(engine, p, i % 2 == 0)
                                     for i, p in enumerate(PROMPTS)))
    assert [r[0] for r in results] == alone


@pytest.fixture(scope="module")
def spec_server() -> Running:
    with running_server(parallel=2, ctx_size=1024, threads=1, spec_type=["ngram-mod"],
                        endpoint_metrics=True) as running:
        yield running


def test_http_timings_metrics_and_opt_out(spec_server: Running) -> None:
    with httpx.Client(base_url=spec_server.url, timeout=120) as c:
        body = {"prompt": PROMPTS[0], "n_predict": 32, "temperature": 0, "cache_prompt": False}
        on = c.post("/completion", json=body).json()
        off = c.post("/completion", json={**body, "speculative.n_max": 0}).json()
        also_off = c.post("/completion", json={**body, "speculative": False}).json()
        assert on["content"] == off["content"] == also_off["content"]
        assert on["timings"]["draft_n"] >= on["timings"]["draft_n_accepted"] > 0
        assert "draft_n" not in off["timings"] and "draft_n" not in also_off["timings"]
        metrics = c.get("/metrics").text
        drafted = next(float(line.split()[1]) for line in metrics.splitlines()
                       if line.startswith("llamacpp:spec_decode_num_draft_tokens_total "))
        assert drafted >= on["timings"]["draft_n"]
        props = c.get("/props").json()
        assert props["default_generation_settings"]["speculative.types"] == "ngram-mod"
