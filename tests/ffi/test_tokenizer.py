"""Tokenizer: upstream's vocab fixtures, round trips, special tokens, invalid ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_ffi import InvalidTokenError, Model, TokenDecoder

SEPARATOR = "\n__ggml_vocab_test__\n"


def read_cases(vocab_file: Path) -> list[tuple[str, list[int]]]:
    """upstream's format: inputs separated by a marker line; one line of expected ids per input."""
    raw = vocab_file.with_name(vocab_file.name + ".inp").read_text(encoding="utf-8")
    inputs = raw.split(SEPARATOR)
    if inputs and inputs[-1] == "":
        inputs.pop()
    outputs = vocab_file.with_name(vocab_file.name + ".out").read_text(encoding="utf-8").split("\n")
    expected = [[int(t) for t in line.split()] for line in outputs[: len(inputs)]]
    assert len(inputs) == len(expected) > 10
    return list(zip(inputs, expected))


@pytest.mark.parametrize("name", ["llama-spm", "gpt-2", "bert-bge", "qwen2", "phi-3"])
def test_upstream_vocab_cases(vocab_dir: Path, name: str) -> None:
    path = vocab_dir / f"ggml-vocab-{name}.gguf"
    if not path.with_name(path.name + ".inp").is_file():
        pytest.skip(f"{path.name} has no test cases in this source tree")
    with Model(path, vocab_only=True) as vocab_model:
        vocab = vocab_model.vocab
        for text, ids in read_cases(path):
            assert vocab.tokenize(text, add_special=False, parse_special=False) == ids, repr(text)


ROUND_TRIP = [
    "Hello world",
    " leading space and  double  spaces",
    "line one\nline two\n\n\ttabbed",
    "Ünïcödé, 日本語, Ελληνικά, emoji 🦙🔥",
    "code: def f(x):\n    return x ** 2  # comment",
]


def test_fim_tokens(model: Model, vocab_dir: Path) -> None:
    # SmolLM2 names a repository token but no prefix/suffix/middle ones
    vocab = model.vocab
    assert (vocab.fim_pre, vocab.fim_suf, vocab.fim_mid, vocab.fim_sep) == (-1, -1, -1, -1)
    assert vocab.fim_rep >= 0 and vocab.is_control(vocab.fim_rep)
    with Model(vocab_dir / "ggml-vocab-starcoder.gguf", vocab_only=True) as starcoder:
        fim = starcoder.vocab
        texts = [fim.token_text(t) for t in (fim.fim_pre, fim.fim_suf, fim.fim_mid, fim.fim_pad)]
        assert texts == [b"<fim_prefix>", b"<fim_suffix>", b"<fim_middle>", b"<fim_pad>"]
        assert fim.fim_rep == fim.fim_sep == -1


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(model: Model, text: str) -> None:
    vocab = model.vocab
    tokens = vocab.tokenize(text, add_special=False)
    assert tokens and all(0 <= t < vocab.n_tokens for t in tokens)
    assert vocab.detokenize(tokens) == text
    assert b"".join(vocab.token_to_piece(t) for t in tokens).decode("utf-8") == text


def test_special_tokens(model: Model) -> None:
    vocab = model.vocab
    start = vocab.tokenize("<|im_start|>", add_special=False, parse_special=True)
    assert len(start) == 1 and vocab.is_control(start[0])
    assert len(vocab.tokenize("<|im_start|>", add_special=False, parse_special=False)) > 1
    assert vocab.token_to_piece(start[0], special=True) == b"<|im_start|>"
    assert vocab.token_to_piece(start[0], special=False) == b""
    assert vocab.is_eog(vocab.eos) and not vocab.is_eog(start[0] + 1000)
    assert vocab.eos in vocab.eog_tokens
    assert vocab.nl >= 0 and vocab.token_to_piece(vocab.nl) == b"\n"
    with_bos = vocab.tokenize("hi", add_special=True)
    assert (with_bos[0] == vocab.bos) == vocab.add_bos
    assert vocab.detokenize(start, unparse_special=True) == "<|im_start|>"
    assert vocab.detokenize(start, unparse_special=False) == ""


@pytest.mark.parametrize("bad", [-1, 49152, 10**9, 2**40, 1.5, "3", None, True])
def test_invalid_ids_are_rejected_before_libllama(model: Model, bad: object) -> None:
    vocab = model.vocab
    with pytest.raises(InvalidTokenError):
        vocab.token_to_piece(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidTokenError):
        vocab.detokenize([1, bad])  # type: ignore[list-item]
    with pytest.raises(InvalidTokenError):
        vocab.check_tokens([0, bad])
    with pytest.raises(InvalidTokenError):
        vocab.is_eog(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # InvalidTokenError is a ValueError
        vocab.is_control(bad)  # type: ignore[arg-type]


def test_vocab_size_boundary(model: Model) -> None:
    vocab = model.vocab
    assert vocab.n_tokens == 49152
    vocab.check_tokens([0, vocab.n_tokens - 1])
    assert isinstance(vocab.token_to_piece(vocab.n_tokens - 1), bytes)


def test_token_decoder_never_splits_a_character(model: Model) -> None:
    vocab = model.vocab
    text = "🦙 and 日本"
    tokens = vocab.tokenize(text, add_special=False)
    pieces = [vocab.token_to_piece(t) for t in tokens]
    assert any(_partial(p) for p in pieces), "the test needs a token that ends mid-character"
    decoder = TokenDecoder(vocab)
    outputs = [decoder.feed(t) for t in tokens]
    assert "".join(outputs) + decoder.flush() == text
    assert all("\ufffd" not in out for out in outputs)
    assert "" in outputs  # some token completed no character


def _partial(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_token_decoder_flushes_invalid_bytes(model: Model) -> None:
    decoder = TokenDecoder(model.vocab)
    assert decoder.feed_bytes(b"ok \xf0\x9f") == "ok "
    assert decoder.pending
    assert decoder.flush() == "\ufffd"
    assert not decoder.pending


def test_tokenize_long_text_grows_the_buffer(model: Model) -> None:
    text = "word " * 5000
    tokens = model.vocab.tokenize(text, add_special=False)
    assert len(tokens) >= 5000
    assert model.vocab.detokenize(tokens) == text


def test_invalid_utf8_input_is_accepted_as_bytes(model: Model) -> None:
    tokens = model.vocab.tokenize(b"\xff\xfe abc", add_special=False)
    assert tokens
    assert model.vocab.detokenize(tokens).endswith(" abc")
