"""Reranking in llama_ffi: rank pooling through ``Embedder``, pairs through ``RerankPrompt``,
and the inputs libllama would abort on, refused first (on the tiny BERT reranker)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from tiny_reranker import N_CTX_TRAIN, SEP

from llama_ffi import Batch, Context, ContextError, Embedder, Model, RerankPrompt

CLS = 101


@pytest.fixture(scope="module")
def reranker(reranker_path: Path) -> Iterator[Model]:
    with Model(reranker_path) as model:
        yield model


def test_rank_pooling_gives_n_cls_out_values(reranker: Model, write_reranker, tmp_path: Path) -> None:
    assert reranker.pooling_type == "rank"
    assert reranker.n_cls_out == 1
    tokens = RerankPrompt(reranker).tokenize("what is a panda?", ["a bear"])[0]
    with Embedder(reranker, n_ctx=64, pooling="rank", n_threads=1) as embedder:
        assert embedder.pooling == "rank" and embedder.pooled
        first = embedder.embed(tokens)
        assert len(first) == 1 and len(first[0]) == 1
        assert embedder.embed(tokens) == first  # deterministic
    with Model(write_reranker(tmp_path / "two.gguf", labels=["yes", "no"])) as two:
        assert two.n_cls_out == 2
        with Embedder(two, n_ctx=64, pooling="rank", n_threads=1) as embedder:
            (row,) = embedder.embed(tokens)
            assert len(row) == 2 and row[0] != row[1]


def test_pair_layout_without_template(reranker: Model) -> None:
    vocab = reranker.vocab
    prompt = RerankPrompt(reranker)
    assert prompt.template is None
    assert (vocab.add_bos, vocab.add_eos, vocab.add_sep) == (True, True, True)
    query, docs = "What is a panda?", ["It is a bear.", "", "[SEP] stays text"]
    q = vocab.tokenize(query, add_special=False)
    pairs = prompt.tokenize(query, docs)
    for doc, pair in zip(docs, pairs):
        assert pair == [CLS, *q, SEP, SEP, *vocab.tokenize(doc, add_special=False), SEP]
    assert SEP not in pairs[2][len(q) + 3:-1]  # a document's special-token text is plain text


def test_pair_layout_with_template(write_reranker, tmp_path: Path) -> None:
    template = "[CLS] query: {query} [SEP] document: {document}"
    with Model(write_reranker(tmp_path / "templated.gguf", template=template)) as model:
        prompt = RerankPrompt(model)
        assert prompt.template == template
        (pair,) = prompt.tokenize("pandas", ["bears"])
        vocab = model.vocab
        # special-token text is parsed, nothing is added
        assert pair == vocab.tokenize("[CLS] query: pandas [SEP] document: bears",
                                      add_special=False, parse_special=True)
        assert pair[0] == CLS and pair.count(SEP) == 1 and pair[-1] != SEP
        # replaced one after the other, as llama.cpp does
        (odd,) = prompt.tokenize("{document}", ["bears"])
        assert odd == vocab.tokenize("[CLS] query: bears [SEP] document: bears",
                                     add_special=False, parse_special=True)


def test_embedder_input_bounded_by_learned_positions(reranker: Model) -> None:
    # BERT's positions are a table of n_ctx_train rows: a longer input aborts ggml
    with Embedder(reranker, n_ctx=4 * N_CTX_TRAIN, pooling="rank", n_threads=1) as embedder:
        assert embedder.n_ctx == N_CTX_TRAIN
        assert embedder.embed([CLS] * N_CTX_TRAIN)
        with pytest.raises(ContextError, match="larger than"):
            embedder.embed([CLS] * (N_CTX_TRAIN + 1))


def test_decode_on_a_context_without_memory_is_bounded(reranker: Model) -> None:
    # no KV cache: libllama encodes instead, every token an output; past n_outputs_max it aborts
    with Context(reranker, n_ctx=256, n_outputs_max=2, n_threads=1) as ctx, Batch(8) as batch:
        assert not ctx.has_memory
        batch.add_tokens([CLS, 2054, 2003, SEP], 0, 0)
        with pytest.raises(ContextError, match="limit of 2"):
            ctx.decode(batch)
        with pytest.raises(ContextError, match="limit of 2"):
            ctx.encode(batch)


def test_special_tokens_only_where_the_vocabulary_asks(model: Model) -> None:
    # SmolLM2 has BOS and EOS but asks for none of them (nor for a SEP): the texts alone
    vocab = model.vocab
    assert not (vocab.add_bos or vocab.add_eos or vocab.add_sep)
    (pair,) = RerankPrompt(model).tokenize("a query", ["a document"])
    assert pair == vocab.tokenize("a query", add_special=False) + vocab.tokenize(
        "a document", add_special=False)
