"""Shared fixtures: the default model, loaded once per test session.

llama_ffi is imported inside the fixtures, so test directories that do not
need the compiled binding (tests/build) still collect without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

# upstream's source tree fetched by the lead before build_native.py existed
_FALLBACK_SOURCE_DIRS = (Path("/tmp/dl/llama_cpp_python-0.3.36/vendor/llama.cpp"),)


@pytest.fixture(scope="session")
def model_path() -> Path:
    import llama_ffi

    return llama_ffi.default_model_path()


@pytest.fixture(scope="session")
def model(model_path: Path) -> Iterator["llama_ffi.Model"]:  # noqa: F821
    import llama_ffi

    with llama_ffi.Model(model_path) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def vocab_dir() -> Path:
    """Directory holding upstream's ``ggml-vocab-*.gguf`` tokenizer fixtures (with ``.inp``/``.out``)."""
    import llama_ffi

    candidates = []
    if os.environ.get("LLAMA_FFI_VOCAB_DIR"):
        candidates.append(Path(os.environ["LLAMA_FFI_VOCAB_DIR"]))
    try:
        candidates.append(Path(llama_ffi.native_manifest()["source_dir"]) / "models")
    except (FileNotFoundError, KeyError, TypeError):
        pass
    candidates += [d / "models" for d in _FALLBACK_SOURCE_DIRS]
    for directory in candidates:
        if any(directory.glob("ggml-vocab-*.gguf")):
            return directory
    pytest.skip("no llama.cpp source tree with models/ggml-vocab-*.gguf (build_native.py keeps one)")


# Tiny LoRA adapters for the default model, written with ggml-org's ``gguf`` package: each adds
# ``B @ A`` (rank 4) to every layer's attention query and output weights. ``zero=True`` (B = 0)
# changes nothing; random A and B change the output.
_LORA_RANK = 4


def _write_lora(path: Path, model, *, zero: bool, seed: int = 0, arch: str = "llama",
               n_embd: int | None = None) -> Path:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    n_embd = n_embd or model.n_embd
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(_LORA_RANK))
    for layer in range(model.n_layer):
        for name in ("attn_q", "attn_output"):
            # numpy shapes are ggml's reversed: A is [n_in, rank] and B [rank, n_out] in ggml
            a = rng.normal(0.0, 0.5, (_LORA_RANK, n_embd)).astype(np.float32)
            b = (np.zeros if zero else lambda shape: rng.normal(0.0, 0.5, shape))((n_embd, _LORA_RANK))
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_a", a)
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_b", np.asarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def write_lora():
    """``write_lora(path, model, zero=..., seed=..., n_embd=...)`` writes a LoRA GGUF for ``model``."""
    return _write_lora
