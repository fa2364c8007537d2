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
