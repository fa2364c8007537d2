"""Context: batched sequences, KV-cache operations, state round trips, embeddings, guards and callbacks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import pytest

from llama_ffi import (
    Batch,
    Context,
    ContextError,
    DecodeError,
    Llama,
    Model,
    SamplerChain,
    SamplerParams,
    StateError,
)

PROMPTS = ["The capital of Italy is", "My favourite programming language is"]
N_GEN = 8


def greedy_chain(model: Model) -> SamplerChain:
    return SamplerChain(model, SamplerParams(temperature=0.0))


def test_two_sequences_in_one_batch_match_each_alone(model: Model, ctx: Context, generate: Callable) -> None:
    vocab = model.vocab
    prompts = [vocab.tokenize(p, add_special=True) for p in PROMPTS]
    alone = []
    for prompt in prompts:
        with greedy_chain(model) as chain:
            alone.append(generate(ctx, chain, prompt, N_GEN))
    ctx.memory_clear()

    chains = [greedy_chain(model), greedy_chain(model)]
    together: list[list[int]] = [[], []]
    with Batch(64, n_seq_max=2) as batch:
        rows = []
        for seq, prompt in enumerate(prompts):
            for pos, tok in enumerate(prompt):
                row = batch.add(tok, pos, seq, pos == len(prompt) - 1)
            rows.append(row)
        ctx.decode(batch)
        for step in range(N_GEN):
            picked = [chains[seq].sample(ctx, rows[seq]) for seq in range(2)]
            batch.clear()
            for seq, tok in enumerate(picked):
                together[seq].append(tok)
                rows[seq] = batch.add(tok, len(prompts[seq]) + step, seq, True)
            ctx.decode(batch)
    for chain in chains:
        chain.close()
    for seq, run in enumerate(together):  # `generate` stops at end of generation; the lockstep loop does not
        ends = [i for i, tok in enumerate(run) if vocab.is_eog(tok)]
        together[seq] = run[: ends[0]] if ends else run
    assert together == alone
    assert together[0] != together[1]


def test_seq_cp_and_seq_rm(model: Model, ctx: Context, prefill: Callable) -> None:
    prompt = model.vocab.tokenize(PROMPTS[0], add_special=True)
    idx = prefill(ctx, prompt, 0)
    with greedy_chain(model) as chain:
        expected = chain.sample(ctx, idx)
    assert ctx.seq_pos_max(0) == len(prompt) - 1
    assert ctx.seq_pos_max(1) == -1

    ctx.seq_cp(0, 1)
    assert ctx.seq_pos_max(1) == len(prompt) - 1
    # drop the last token of sequence 1 and decode it again there: same prediction as sequence 0
    assert ctx.seq_rm(1, len(prompt) - 1, -1)
    assert ctx.seq_pos_max(1) == len(prompt) - 2
    with Batch(1) as batch, greedy_chain(model) as chain:
        row = batch.add(prompt[-1], len(prompt) - 1, 1, True)
        ctx.decode(batch)
        assert chain.sample(ctx, row) == expected

    assert ctx.seq_rm(1)
    assert ctx.seq_pos_max(1) == -1 and ctx.seq_pos_max(0) == len(prompt) - 1
    ctx.seq_keep(1)
    assert ctx.seq_pos_max(0) == -1
    with pytest.raises(ValueError):
        ctx.seq_cp(0, 4)  # n_seq_max is 4
    with pytest.raises(ValueError):
        ctx.seq_pos_max(-1)


def test_part_of_a_sequence_cannot_be_copied_across_kv_streams(model: Model, prefill: Callable) -> None:
    # libllama aborts the process on it; the binding refuses it, and the whole copy works
    with Context(model, n_ctx=512, n_seq_max=2, kv_unified=False, n_threads=1) as ctx:
        assert not ctx.kv_unified
        prompt = model.vocab.tokenize(PROMPTS[0], add_special=True)
        prefill(ctx, prompt, 0)
        with pytest.raises(ContextError, match="whole sequences"):
            ctx.seq_cp(0, 1, 0, 3)
        assert ctx.seq_pos_max(1) == -1
        ctx.seq_cp(0, 1)
        assert ctx.seq_pos_max(1) == len(prompt) - 1


def test_seq_add_shifts_positions(model: Model, ctx: Context, prefill: Callable) -> None:
    prefill(ctx, model.vocab.tokenize(PROMPTS[1]), 0)
    end = ctx.seq_pos_max(0)
    assert ctx.memory_can_shift
    ctx.seq_add(0, 0, -1, 10)
    assert ctx.seq_pos_max(0) == end + 10 and ctx.seq_pos_min(0) == 10
    ctx.seq_div(0, 0, -1, 2)
    assert ctx.seq_pos_max(0) == (end + 10) // 2


def test_state_round_trip(model: Model, ctx: Context, prefill: Callable, tmp_path: Path) -> None:
    prompt = model.vocab.tokenize(PROMPTS[0], add_special=True)
    prefill(ctx, prompt, 0)

    def next_token() -> int:
        with Batch(1) as batch, greedy_chain(model) as chain:
            row = batch.add(prompt[-1], len(prompt) - 1, 0, True)
            ctx.seq_rm(0, len(prompt) - 1, -1)
            ctx.decode(batch)
            return chain.sample(ctx, row)

    expected = next_token()
    state = ctx.state_seq_get(0)
    assert len(state) > 1000

    ctx.memory_clear()
    assert ctx.seq_pos_max(0) == -1
    assert ctx.state_seq_set(0, state) == len(state)
    assert ctx.seq_pos_max(0) == len(prompt) - 1
    assert next_token() == expected

    path = tmp_path / "seq0.state"
    assert ctx.state_seq_save_file(path, 0, prompt) > 0
    ctx.memory_clear()
    assert ctx.state_seq_load_file(path, 2) == prompt
    assert ctx.seq_pos_max(2) == len(prompt) - 1

    with pytest.raises(StateError):
        ctx.state_seq_set(0, b"not a state")
    with pytest.raises(StateError):
        ctx.state_seq_set(0, state[: len(state) // 2])
    (tmp_path / "junk").write_bytes(b"\0" * 64)
    with pytest.raises(StateError):
        ctx.state_seq_load_file(tmp_path / "junk", 0)
    with pytest.raises(StateError):
        ctx.state_seq_load_file(tmp_path / "missing", 0)


def test_embeddings(model: Model) -> None:
    vocab = model.vocab
    with Context(model, n_ctx=128, n_batch=128, n_ubatch=128, embeddings=True, pooling="mean", n_threads=1) as ctx:
        assert ctx.pooling == "mean"

        def embed(text: str) -> list[float]:
            tokens = vocab.tokenize(text)
            ctx.memory_clear()
            with Batch(len(tokens)) as batch:
                for pos, tok in enumerate(tokens):
                    batch.add(tok, pos, 0, True)
                ctx.decode(batch)
            per_token = ctx.embeddings_ith(len(tokens) - 1)
            assert len(per_token) == model.n_embd
            return ctx.embeddings_seq(0)

        first = embed("a cat sat on the mat")
        assert len(first) == model.n_embd and all(math.isfinite(v) for v in first)
        assert embed("a cat sat on the mat") == first
        assert embed("quantum chromodynamics") != first


def test_llama_embed_is_normalised(model_path: Path) -> None:
    with Llama(model_path, n_ctx=128, n_threads=1) as llm:
        vectors = llm.embed(["hello", "good morning"])
        assert len(vectors) == 2 and len(vectors[0]) == llm.model.n_embd
        assert math.fsum(v * v for v in vectors[0]) == pytest.approx(1.0)
        raw = llm.embed("hello", normalize=False)[0]
        assert math.fsum(v * v for v in raw) != pytest.approx(1.0)


def test_decode_guards(model: Model, ctx: Context, prefill: Callable) -> None:
    with Batch(4) as batch:
        with pytest.raises(ContextError, match="empty"):
            ctx.decode(batch)
        batch.add(model.vocab.n_tokens, 0, 0, True)
        with pytest.raises(DecodeError) as info:
            ctx.decode(batch)
        assert info.value.code == -1
    with Batch(600) as big:
        for pos in range(600):
            big.add(5, pos, 0, False)
        with pytest.raises(ContextError, match="exceeds"):
            ctx.decode(big)
    prefill(ctx, [1, 2, 3])
    with pytest.raises(ContextError, match="no output"):
        ctx.logits_ith(0)
    with pytest.raises(ContextError, match="no output"):
        ctx.logits_ith(7)
    assert len(ctx.logits_list(2)) == model.vocab.n_tokens == len(ctx.logits_list(-1))


def test_full_context_is_decode_error_1(model: Model) -> None:
    with Context(model, n_ctx=256, n_batch=256, n_threads=1) as ctx, Batch(256) as batch:
        for pos in range(256):
            batch.add(5, pos, 0, pos == 255)
        ctx.decode(batch)
        batch.clear()
        batch.add(5, 256, 0, True)
        with pytest.raises(DecodeError) as info:
            ctx.decode(batch)
        assert info.value.code == 1


def test_add_tokens_decodes_like_add_per_token(model: Model, ctx: Context) -> None:
    vocab = model.vocab
    prompts = [vocab.tokenize(p, add_special=True) for p in PROMPTS]
    runs = []
    for bulk in (False, True):
        ctx.memory_clear()
        with Batch(64, n_seq_max=2) as batch:
            batch.add(prompts[0][0], 0, 0, False)  # bulk and single adds mix in one batch
            rows = []
            for seq, prompt in enumerate(prompts):
                first = 1 if seq == 0 else 0
                if bulk:
                    rows.append(batch.add_tokens(prompt[first:], first, seq))
                else:
                    for pos in range(first, len(prompt)):
                        row = batch.add(prompt[pos], pos, seq, pos == len(prompt) - 1)
                    rows.append(row)
            filled = (batch.tokens(), list(batch.outputs), rows)
            ctx.decode(batch)
            logits = [ctx.logits_list(row) for row in rows]
        tail = []  # and the cache it left goes on the same way
        with greedy_chain(model) as chain, Batch(1) as step:
            idx = rows[1]
            for pos in range(len(prompts[1]), len(prompts[1]) + 4):
                tail.append(chain.sample(ctx, idx))
                step.clear()
                idx = step.add(tail[-1], pos, 1, True)
                ctx.decode(step)
        runs.append((filled, logits, tail))
    assert runs[0][0] == runs[1][0]
    assert runs[0][0][1] == [len(prompts[0]) - 1, len(prompts[0]) + len(prompts[1]) - 1]
    assert runs[0][1] == runs[1][1]  # bit for bit
    assert runs[0][2] == runs[1][2] and runs[0][2]


def test_add_tokens_limits() -> None:
    with Batch(4) as batch:
        assert batch.add_tokens([5, 6], 10, 0, logits_last=False) == 1
        assert batch.outputs == [] and batch.tokens() == [5, 6]
        with pytest.raises(Exception, match="full"):
            batch.add_tokens([7, 8, 9], 12, 0)
        with pytest.raises(OverflowError):
            batch.add_tokens([7, 2**40], 12, 0)
        assert batch.tokens() == [5, 6]  # a refused call adds nothing
        assert batch.add_tokens([7], 12, 0) == 2 and batch.outputs == [2]
        with pytest.raises(ValueError):
            batch.add_tokens([], 0, 0)
    with pytest.raises(Exception, match="closed"):
        batch.add_tokens([1], 0, 0)
    with Batch(2, embd=8) as embd_batch, pytest.raises(Exception, match="embeddings"):
        embd_batch.add_tokens([1], 0, 0)


def test_batch_limits() -> None:
    with Batch(2, n_seq_max=2) as batch:
        batch.add(1, 0, [0, 1], True)
        batch.add(2, 1, 0, False)
        assert len(batch) == 2 and batch.outputs == [0] and batch.tokens() == [1, 2]
        with pytest.raises(Exception, match="full"):
            batch.add(3, 2, 0, False)
        batch.clear()
        with pytest.raises(ValueError):
            batch.add(3, 0, [0, 1, 2], False)
    with pytest.raises(Exception, match="closed"):
        batch.add(1, 0, 0, True)


def test_abort_callback(model: Model, ctx: Context, prefill: Callable) -> None:
    tokens = model.vocab.tokenize(PROMPTS[1])
    ctx.set_abort_callback(lambda: True)
    with pytest.raises(DecodeError) as info:
        prefill(ctx, tokens)
    assert info.value.code == 2

    def broken() -> bool:
        raise KeyError("from the callback")

    ctx.set_abort_callback(broken)
    with pytest.raises(KeyError, match="from the callback"):
        prefill(ctx, tokens)
    ctx.set_abort_callback(None)
    prefill(ctx, tokens)


def test_closed_context_and_model_order(model_path: Path) -> None:
    with Model(model_path) as own_model:
        ctx = Context(own_model, n_ctx=128, n_threads=1)
        chain = SamplerChain(own_model, SamplerParams())
    assert own_model.closed and ctx.closed and chain.closed  # the model closed its dependents first
    with pytest.raises(ContextError):
        ctx.seq_pos_max(0)
    with pytest.raises(Exception, match="closed"):
        own_model.vocab.tokenize("x")


def test_perf_counters(model: Model, ctx: Context, prefill: Callable) -> None:
    ctx.perf_reset()
    prefill(ctx, model.vocab.tokenize(PROMPTS[0]))
    perf = ctx.perf()
    assert perf["n_p_eval"] > 0 and perf["t_load_ms"] > 0
    assert set(perf) >= {"t_p_eval_ms", "t_eval_ms", "n_eval"}
