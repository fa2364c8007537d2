"""SamplerChain: greedy, seeds, tail-free, penalties (newline, penalty prompt), biases, grammar, probabilities."""

from __future__ import annotations

import math
from typing import Callable

import pytest

from llama_ffi import (
    Context,
    GrammarError,
    InvalidTokenError,
    Model,
    SamplerChain,
    SamplerParams,
    ffi,
    lib,
)
from llama_ffi._custom_samplers import TailFreeSampler

PROMPT = "The three primary colors are"


def greedy(**overrides: object) -> SamplerParams:
    return SamplerParams(temperature=0.0, **overrides)  # type: ignore[arg-type]


def tokens_of(model: Model, text: str = PROMPT) -> list[int]:
    return model.vocab.tokenize(text, add_special=True, parse_special=True)


def test_greedy_is_deterministic_and_is_the_argmax(
    model: Model, ctx: Context, prefill: Callable, generate: Callable
) -> None:
    prompt = tokens_of(model)
    idx = prefill(ctx, prompt)
    logits = ctx.logits_list(idx)
    with SamplerChain(model, greedy()) as chain:
        first = chain.sample(ctx, idx)
    assert first == max(range(len(logits)), key=logits.__getitem__)
    with SamplerChain(model, greedy()) as a, SamplerChain(model, greedy()) as b:
        run_a = generate(ctx, a, prompt, 12)
        run_b = generate(ctx, b, prompt, 12)
    assert run_a == run_b and run_a[0] == first and len(run_a) == 12


def test_greedy_argmax_shortcut_matches_the_chain(
    model: Model, ctx: Context, prefill: Callable, generate: Callable
) -> None:
    # Plain greedy skips libllama's chain; XTC with a threshold above 0.5 never removes a token
    # but keeps the chain in use, so both runs must pick the same tokens, biases included.
    prompt = tokens_of(model)
    idx = prefill(ctx, prompt)
    with SamplerChain(model, greedy()) as plain:
        first = plain.sample(ctx, idx)
    nudged = model.vocab.tokenize(" zebra", add_special=False)[0]
    biases = {first: -math.inf, nudged: 7.5}
    runs = []
    for extra in ({}, {"xtc_probability": 1.0, "xtc_threshold": 0.9}):
        with SamplerChain(model, greedy(logit_bias=biases, ignore_eos=True, **extra)) as chain:
            assert chain._plain_greedy == (not extra)  # which path ran
            runs.append(generate(ctx, chain, prompt, 16))
    assert runs[0] == runs[1]
    assert first not in runs[0]
    with SamplerChain(model, greedy(logit_bias={nudged: 100.0})) as pushed:
        assert pushed.sample(ctx, prefill(ctx, prompt)) == nudged


def wide(seed: int, **overrides: object) -> SamplerParams:
    return SamplerParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed, **overrides)  # type: ignore


def test_seed_reproducibility(model: Model, ctx: Context, generate: Callable) -> None:
    prompt = tokens_of(model, "Write a random word:")
    runs = {}
    for name, seed in (("a", 1234), ("b", 1234), ("c", 99)):
        with SamplerChain(model, wide(seed)) as chain:
            assert chain.seed == seed
            runs[name] = generate(ctx, chain, prompt, 16)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_random_seed_is_drawn(model: Model) -> None:
    with SamplerChain(model, wide(-1)) as a, SamplerChain(model, wide(-1)) as b:
        assert a.seed != b.seed


def test_chain_follows_samplers_order(model: Model) -> None:
    params = SamplerParams(tfs_z=0.9, typical_p=0.9, samplers=["temperature", "typical_p", "tfs_z", "top_k"])
    with SamplerChain(model, params) as chain:
        assert chain.stage_names() == ["temp-ext", "typical", "tail-free", "top-k", "dist"]
    with pytest.raises(ValueError, match="unknown sampler"):
        SamplerChain(model, SamplerParams(samplers=["top_k", "nonsense"]))


def tail_free_reference(logits: list[float], z: float) -> int:
    """How many candidates tail-free sampling keeps, computed the slow, obvious way."""
    ranked = sorted(logits, reverse=True)
    top = ranked[0]
    exps = [math.exp(x - top) for x in ranked]
    probs = [e / sum(exps) for e in exps]
    first = [probs[i] - probs[i + 1] for i in range(len(probs) - 1)]
    second = [abs(first[i] - first[i + 1]) for i in range(len(first) - 1)]
    weights = [s / sum(second) for s in second]
    total = 0.0
    for i, w in enumerate(weights):
        total += w
        if total > z and i >= 1:
            return i
    return len(logits)


def test_tail_free_stage_on_known_candidates() -> None:
    logits = [5.0, 4.8, 4.5, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -1.0]
    order = [3, 0, 7, 11, 1, 5, 2, 10, 4, 9, 6, 8]  # unsorted input
    data = ffi.new("llama_token_data[]", [(tok, logits[tok], 0.0) for tok in order])
    cur_p = ffi.new("llama_token_data_array *", (data, len(order), -1, False))
    errors: list[BaseException] = []
    stage = TailFreeSampler(errors, z=0.5, min_keep=1)
    try:
        lib.llama_sampler_apply(stage.ptr, cur_p)
    finally:
        lib.llama_sampler_free(stage.ptr)
    assert errors == []
    kept = [cur_p.data[i].id for i in range(cur_p.size)]
    assert len(kept) == tail_free_reference(logits, 0.5) < len(logits)
    assert kept == sorted(kept, key=lambda t: -logits[t])  # best first
    assert kept == list(range(len(kept)))  # the highest logits survive
    assert stage.ptr is None  # the free callback ran


def test_tfs_z_filters_candidates(model: Model, ctx: Context, prefill: Callable) -> None:
    idx = prefill(ctx, tokens_of(model))

    def candidates(tfs_z: float) -> list[tuple[int, float]]:
        params = SamplerParams(temperature=1.0, tfs_z=tfs_z, top_k=200, samplers=["top_k", "tfs_z"], seed=1)
        with SamplerChain(model, params) as chain:
            return chain.sample_with_probs(ctx, idx, 200)[1]

    everything = candidates(1.0)
    tail_free = candidates(0.5)
    assert len(everything) == 200
    assert 1 <= len(tail_free) < 100
    assert [t for t, _ in tail_free] == [t for t, _ in everything[: len(tail_free)]]
    assert sum(p for _, p in tail_free) == pytest.approx(1.0, abs=1e-4)


def nl_probability(model: Model, ctx: Context, prefill: Callable, **params: object) -> float:
    prompt = tokens_of(model, "1\n2\n3\n4\n5\n6\n7\n8")
    idx = prefill(ctx, prompt)
    stages = ["penalties", "temperature"]
    sampling = SamplerParams(temperature=1.0, samplers=stages, seed=3, **params)  # type: ignore[arg-type]
    with SamplerChain(model, sampling) as chain:
        chain.accept_prompt(prompt)
        _, probs = chain.sample_with_probs(ctx, idx, 5000)
    return dict(probs).get(model.vocab.nl, 0.0)


def test_penalize_nl(model: Model, ctx: Context, prefill: Callable) -> None:
    plain = nl_probability(model, ctx, prefill)
    kept = nl_probability(model, ctx, prefill, repeat_penalty=3.0, penalize_nl=False)
    penalized = nl_probability(model, ctx, prefill, repeat_penalty=3.0, penalize_nl=True)
    assert plain > 0.05
    assert penalized < plain / 2  # the penalties stage hits the newline...
    assert kept >= plain  # ...unless penalize_nl is off (the other history tokens lose mass)


def test_penalty_prompt_replaces_the_prompt(model: Model, ctx: Context, prefill: Callable) -> None:
    prompt = tokens_of(model)
    idx = prefill(ctx, prompt)
    with SamplerChain(model, greedy()) as plain:
        favourite = plain.sample(ctx, idx)
    other = model.vocab.tokenize(" zebra", add_special=False)
    strong = {"repeat_penalty": 50.0, "samplers": ["penalties"]}
    with SamplerChain(model, greedy(penalty_prompt_tokens=[favourite], **strong)) as chain:
        assert chain.sample(ctx, idx) != favourite
    with SamplerChain(model, greedy(penalty_prompt_tokens=other, **strong)) as chain:
        chain.accept_prompt([favourite])  # ignored by the penalties: penalty_prompt_tokens rule
        assert chain.sample(ctx, idx) == favourite
    with SamplerChain(model, greedy(**strong)) as chain:
        chain.accept_prompt([favourite])
        assert chain.sample(ctx, idx) != favourite
    with SamplerChain(model, greedy(penalty_prompt_tokens=[favourite], **strong)) as chain:
        chain.reset()  # the penalty prompt survives a reset
        assert chain.sample(ctx, idx) != favourite


def test_logit_bias(model: Model, ctx: Context, prefill: Callable) -> None:
    idx = prefill(ctx, tokens_of(model))
    with SamplerChain(model, greedy()) as plain:
        favourite = plain.sample(ctx, idx)
    with SamplerChain(model, greedy(logit_bias={favourite: -math.inf})) as banned:
        assert banned.sample(ctx, idx) != favourite
    forced = model.vocab.tokenize(" zebra", add_special=False)[0]
    with SamplerChain(model, SamplerParams(logit_bias={forced: 100.0}, seed=5)) as pushed:
        assert pushed.sample(ctx, idx) == forced


def test_ignore_eos_bans_end_of_generation(model: Model, ctx: Context, prefill: Callable) -> None:
    idx = prefill(ctx, tokens_of(model))
    eos = model.vocab.eos
    with SamplerChain(model, greedy(logit_bias={eos: 100.0})) as chain:
        assert chain.sample(ctx, idx) == eos
    with SamplerChain(model, greedy(logit_bias={eos: 100.0}, ignore_eos=True)) as chain:
        assert not model.vocab.is_eog(chain.sample(ctx, idx))


@pytest.mark.parametrize(
    "params, error",
    [
        ({"logit_bias": {-1: 1.0}}, InvalidTokenError),
        ({"logit_bias": {49152: 1.0}}, InvalidTokenError),
        ({"logit_bias": {5: math.nan}}, ValueError),
        ({"penalty_prompt_tokens": [1, 10**6]}, InvalidTokenError),
        ({"temperature": math.inf}, ValueError),
        ({"repeat_penalty": 0.0}, ValueError),
        ({"mirostat": 3}, ValueError),
        ({"seed": 2**33}, ValueError),
        ({"top_k": 2.5}, ValueError),
    ],
)
def test_bad_params_are_rejected_in_python(model: Model, params: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        SamplerChain(model, SamplerParams(**params))


def test_grammar_constrains_output(model: Model, ctx: Context, generate: Callable) -> None:
    prompt = tokens_of(model, "Question: is the sky green? Answer:")
    grammar = 'root ::= " " ("yes" | "no") "."'
    with SamplerChain(model, greedy(grammar=grammar)) as chain:
        text = model.vocab.detokenize(generate(ctx, chain, prompt, 10))
    assert text in (" yes.", " no.")
    digits = 'root ::= [0-9] [0-9] [0-9] "-" [0-9]+'
    with SamplerChain(model, SamplerParams(grammar=digits, seed=7, temperature=1.0)) as chain:
        text = model.vocab.detokenize(generate(ctx, chain, prompt, 8))
    assert text[:3].isdigit() and text[3] == "-"


def test_grammar_rejects_forced_tokens(model: Model) -> None:
    with SamplerChain(model, greedy(grammar='root ::= "yes"')) as chain:
        with pytest.raises(GrammarError):
            chain.accept(model.vocab.tokenize(" zebra", add_special=False)[0])
        with pytest.raises(GrammarError):
            chain.accept(model.vocab.eos)  # libllama would abort the process here


def test_grammar_with_no_token_left_is_a_grammar_error(model: Model, ctx: Context,
                                                      prefill: Callable) -> None:
    # the grammar parses, but the only token it allows is banned by logit_bias
    x = model.vocab.tokenize("x", add_special=False)
    assert len(x) == 1
    idx = prefill(ctx, tokens_of(model))
    params = greedy(grammar='root ::= "x"', logit_bias={x[0]: float("-inf")})
    with SamplerChain(model, params) as chain:
        with pytest.raises(GrammarError, match="grammar allows"):
            chain.sample(ctx, idx)


@pytest.mark.parametrize(
    "grammar",
    [
        "root ::= (",
        "root ::= undefined_rule",
        "rule ::= \"no root\"",
        'root ::= "a"{5,2}',  # libllama's parser never returns on this
        "root ::= " + "(" * 500 + '"a"' + ")" * 500,
        'root ::= "\\x"',
    ],
)
def test_bad_grammar_is_a_grammar_error(model: Model, grammar: str) -> None:
    with pytest.raises(GrammarError):
        SamplerChain(model, SamplerParams(grammar=grammar))


def test_sample_with_probs(model: Model, ctx: Context, prefill: Callable) -> None:
    idx = prefill(ctx, tokens_of(model))
    with SamplerChain(model, SamplerParams(temperature=0.8, top_k=5, seed=11)) as chain:
        token, probs = chain.sample_with_probs(ctx, idx, 10)
    assert 1 <= len(probs) <= 5
    values = [p for _, p in probs]
    assert values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(1.0, abs=1e-4)
    assert token in dict(probs)
    with SamplerChain(model, greedy()) as chain:
        token, probs = chain.sample_with_probs(ctx, idx, 3)
    assert len(probs) == 3 and probs[0][0] == token
    logits = ctx.logits_list(idx)
    top = max(logits)
    softmax_top = 1.0 / math.fsum(math.exp(x - top) for x in logits)
    assert probs[0][1] == pytest.approx(softmax_top, rel=1e-4)


def test_exceptions_in_python_stages_are_reraised(model: Model, ctx: Context, prefill: Callable) -> None:
    idx = prefill(ctx, tokens_of(model))
    with SamplerChain(model, SamplerParams(tfs_z=0.5, seed=1)) as chain:
        stage = next(s for s in chain._stages if isinstance(s, TailFreeSampler))

        def boom(cur_p: object) -> None:
            raise RuntimeError("stage failed")

        stage.apply = boom  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="stage failed"):
            chain.sample(ctx, idx)


def test_sampling_needs_an_output_row(model: Model, ctx: Context, prefill: Callable) -> None:
    prefill(ctx, tokens_of(model))
    with SamplerChain(model, greedy()) as chain:
        with pytest.raises(Exception, match="no output"):
            chain.sample(ctx, 0)  # the first prompt token has no logits
