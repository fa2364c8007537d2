"""Model loading, metadata, progress callback, log routing and the error tree."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import llama_ffi
from llama_ffi import (
    ContextError,
    DecodeError,
    GrammarError,
    InvalidTokenError,
    LlamaError,
    Model,
    ModelLoadError,
    NativeLibraryError,
    StateError,
    TemplateError,
)


def test_model_properties(model: Model, model_path: Path) -> None:
    assert model.path == model_path
    assert model.n_ctx_train == 8192 and model.n_embd == 576 and model.n_layer == 30 and model.n_head == 9
    assert 100_000_000 < model.n_params < 200_000_000 and model.size > 50_000_000
    assert "llama" in model.description
    meta = model.metadata
    assert meta["general.architecture"] == "llama"
    assert "tokenizer.chat_template" in meta
    assert model.chat_template() == meta["tokenizer.chat_template"]
    assert model.chat_template("no-such-name") is None
    assert model.has_decoder and not model.has_encoder
    assert model.pooling_type == "none"
    assert model.ftype.startswith("Q4_1")


def test_progress_callback(model_path: Path) -> None:
    seen: list[float] = []
    with Model(model_path, progress=lambda p: seen.append(p) or True) as loaded:
        assert not loaded.closed
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)

    with pytest.raises(ModelLoadError, match="cancelled"):
        Model(model_path, progress=lambda p: False)

    def broken(progress: float) -> bool:
        raise ZeroDivisionError("from progress")

    with pytest.raises(ZeroDivisionError, match="from progress"):
        Model(model_path, progress=broken)


def test_load_failures(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        Model(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(ModelLoadError):
        Model(junk)


def test_vocab_only_model(model_path: Path) -> None:
    with Model(model_path, vocab_only=True) as vocab_model:
        assert vocab_model.vocab_only
        assert vocab_model.vocab.n_tokens == 49152
        assert vocab_model.n_head == 0  # libllama asserts when asked on a model without layers
        assert vocab_model.vocab.tokenize("hi", add_special=False)


def test_vocab_only_gguf_hparams_do_not_abort(vocab_dir: Path) -> None:
    # upstream's tokenizer fixtures hold no tensors and no hyperparameters at all; a
    # context on them would abort the process at the first decode
    with Model(vocab_dir / "ggml-vocab-llama-spm.gguf", vocab_only=True) as vocab_model:
        assert (vocab_model.n_ctx_train, vocab_model.n_embd, vocab_model.n_embd_out,
                vocab_model.n_layer, vocab_model.n_head) == (0, 0, 0, 0, 0)
        assert vocab_model.n_params == 0 and vocab_model.size == 0
        assert isinstance(vocab_model.description, str)
        assert vocab_model.ftype == "unknown"
        assert vocab_model.metadata["general.architecture"] == "llama"
        assert vocab_model.pooling_type == "none" and vocab_model.has_decoder
        assert vocab_model.chat_template() is None
        assert vocab_model.vocab.tokenize("Hello", add_special=False)
        with pytest.raises(ContextError, match="vocab_only"):
            llama_ffi.Context(vocab_model, n_ctx=256)


def test_native_log_goes_to_logging(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=llama_ffi.LOGGER_NAME)
    with Model(model_path, vocab_only=True):
        pass
    native = [r for r in caplog.records if r.name == "llama_ffi.native"]
    assert len(native) > 5
    assert any("llama_model_loader" in r.getMessage() for r in native)
    assert all(not r.getMessage().endswith("\n") and r.getMessage() for r in native)
    caplog.clear()
    with pytest.raises(ModelLoadError):
        Model(__file__)
    assert any(r.levelno == logging.ERROR and r.name == "llama_ffi.native" for r in caplog.records)


def test_exception_tree() -> None:
    for error in (NativeLibraryError, ModelLoadError, ContextError, DecodeError, InvalidTokenError,
                  TemplateError, GrammarError, StateError):
        assert issubclass(error, LlamaError)
    assert issubclass(NativeLibraryError, ImportError)
    for error in (InvalidTokenError, TemplateError, GrammarError):
        assert issubclass(error, ValueError)
    assert DecodeError(1, "x").code == 1


def test_manifest_and_system_info() -> None:
    info = llama_ffi.system_info()
    assert "CPU" in info
    try:
        manifest = llama_ffi.native_manifest()
    except FileNotFoundError as exc:
        assert "build_native.py" in str(exc)
    else:
        assert manifest["upstream_commit"]
        assert llama_ffi.build_info()["upstream_commit"] in ("", manifest["upstream_commit"])


def test_default_model_path_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMA_FFI_MODEL", str(tmp_path / "nope.gguf"))
    with pytest.raises(FileNotFoundError, match="LLAMA_FFI_MODEL"):
        llama_ffi.default_model_path()
    monkeypatch.delenv("LLAMA_FFI_MODEL")
    assert llama_ffi.default_model_path().name.endswith(".gguf")


def test_public_names() -> None:
    for name in llama_ffi.__all__:
        assert hasattr(llama_ffi, name), name
    contract = {"Model", "Vocab", "Context", "Batch", "SamplerParams", "SamplerChain", "TokenDecoder",
                "ChatTemplate", "Llama", "default_model_path", "native_manifest", "system_info"}
    assert contract <= set(llama_ffi.__all__)
