"""Long texts are tokenized in pieces cut after special-token texts: the same tokens as one
call to libllama, without its cost quadratic in the number of special-token texts."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

import llama_ffi._special_split as split
from llama_ffi import Model


def _texts(specials: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["hello", " world", "\n", "  ", "\t", "Ünïcödé", " 日本語", "🦙", "x", "<", ">", "|",
             "<|", "|>", " <", "> ", "\n\n", "123", "user", "assistant"]
    out = []
    for _ in range(6):
        parts = [rng.choice(specials + words * 2) for _ in range(rng.randint(200, 800))]
        out.append("".join(parts))
    # runs of specials back to back, and specials glued to text and whitespace
    out.append("".join(specials) * 50)
    out.append(" ".join(specials) * 50)
    return out


def _specials(model: Model, limit: int = 40) -> list[str]:
    vocab = model.vocab
    found = []
    for tok in range(vocab.n_tokens):
        if vocab.is_control(tok) or tok == vocab.bos:
            found.append(vocab.token_text(tok).decode("utf-8", "replace"))
        if len(found) >= limit:
            break
    return [t for t in found if t]


def _check_same(model: Model, texts: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Cut at every few specials, and compare with one call; returns how many texts were cut."""
    import llama_ffi._vocab as vocab_module

    monkeypatch.setattr(vocab_module, "MIN_BYTES", 0)
    monkeypatch.setattr(split, "PER_PIECE", 3)
    vocab = model.vocab
    vocab._splitters.clear()
    n_cut = 0
    for text in texts:
        data = text.encode("utf-8")
        for add_special in (True, False):
            for parse_special in (True, False):
                whole = vocab._tokenize(data, add_special, parse_special)
                assert vocab.tokenize(text, add_special=add_special,
                                      parse_special=parse_special) == whole, text[:200]
        n_cut += len(vocab._splitters[True].split(data)) > 1
    return n_cut


def test_pieces_give_the_same_tokens(model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _texts(_specials(model), seed=1)
    assert _check_same(model, texts, monkeypatch) == len(texts)  # every text was cut


@pytest.mark.parametrize("name", ["llama-spm", "llama-bpe", "qwen2", "phi-3"])
def test_pieces_give_the_same_tokens_in_other_vocabularies(
        vocab_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Model(vocab_dir / f"ggml-vocab-{name}.gguf", vocab_only=True) as vocab_model:
        texts = _texts(_specials(vocab_model), seed=2)
        assert _check_same(vocab_model, texts, monkeypatch) > 0


def test_overlapping_special_texts_are_never_a_cut(model: Model) -> None:
    vocab = model.vocab
    splitter = split.SpecialSplitter(vocab, True)
    start, end = "<|im_start|>", "<|im_end|>"
    data = (start + end).encode()
    assert splitter._is_cut(data, 0, len(start))
    # a shorter one that overlaps it loses to it (libllama extracts the longest first) ...
    splitter._texts.append(b"start|><|im")
    splitter._attrs[b"start|><|im"] = 8
    assert splitter._is_cut(data, 0, len(start))
    # ... a longer one may be extracted instead
    splitter._texts.insert(0, b"_start|><|im_end")
    splitter._attrs[b"_start|><|im_end"] = 8
    assert not splitter._is_cut(data, 0, len(start))


def test_many_special_tokens_take_linear_time(model: Model) -> None:
    vocab = model.vocab
    text = "<|im_start|>user\nhi<|im_end|>\n" * 4000  # 8,000 special texts
    t0 = time.perf_counter()
    short = vocab.tokenize(text, add_special=False, parse_special=True)
    t_short = time.perf_counter() - t0
    t0 = time.perf_counter()
    long = vocab.tokenize(text * 4, add_special=False, parse_special=True)
    t_long = time.perf_counter() - t0
    assert long == short * 4
    # quadratic would be 16x; linear is 4x (generous for a loaded machine)
    assert t_long < 9 * t_short + 0.5, (t_short, t_long)
