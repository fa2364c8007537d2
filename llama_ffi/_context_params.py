"""The parameters of a ``Context``, checked and turned into libllama's struct."""

from __future__ import annotations

import os
from typing import Any

from llama_ffi._ffi import lib
from llama_ffi._model import POOLING_NAMES

__all__ = ["FLASH_ATTN", "context_params", "default_threads"]

FLASH_ATTN = {
    "auto": lib.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "enabled": lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
    "disabled": lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}

POOLING_TYPES = {name: value for value, name in POOLING_NAMES.items()}

ROPE_SCALING = {
    "none": lib.LLAMA_ROPE_SCALING_TYPE_NONE,
    "linear": lib.LLAMA_ROPE_SCALING_TYPE_LINEAR,
    "yarn": lib.LLAMA_ROPE_SCALING_TYPE_YARN,
    "longrope": lib.LLAMA_ROPE_SCALING_TYPE_LONGROPE,
}


def _ggml_type(name: str) -> int:
    value = getattr(lib, "GGML_TYPE_" + str(name).upper(), None)
    if not isinstance(value, int) or str(name).upper() == "COUNT":
        raise ValueError(f"unknown KV cache type {name!r} (e.g. f16, bf16, q8_0, q4_0)")
    return value


def default_threads() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def context_params(
    *,
    n_ctx: int,
    n_batch: int,
    n_ubatch: int,
    n_seq_max: int,
    n_threads: int | None,
    n_threads_batch: int | None,
    embeddings: bool,
    pooling: str | None,
    flash_attn: str | bool,
    type_k: str,
    type_v: str,
    offload_kqv: bool,
    rope_freq_base: float,
    rope_freq_scale: float,
    rope_scaling: str | None,
    yarn_ext_factor: float | None,
    yarn_attn_factor: float | None,
    yarn_beta_fast: float | None,
    yarn_beta_slow: float | None,
    yarn_orig_ctx: int,
    kv_unified: bool,
    swa_full: bool,
    n_outputs_max: int,
    n_outputs_max_per_seq: int,
    no_perf: bool,
) -> Any:
    """``llama_context_params`` for these options; ValueError for one out of range."""
    if n_ctx < 0 or n_batch < 1 or n_ubatch < 1:
        raise ValueError("n_ctx must be >= 0, n_batch and n_ubatch >= 1")
    max_seq = lib.llama_max_parallel_sequences()
    if not 1 <= n_seq_max <= max_seq:
        raise ValueError(f"n_seq_max must be in 1..{max_seq}")
    if isinstance(flash_attn, bool):
        flash_attn = "on" if flash_attn else "off"
    if flash_attn not in FLASH_ATTN:
        raise ValueError(f"flash_attn must be one of {sorted(FLASH_ATTN)}, not {flash_attn!r}")
    pooling_key = "unspecified" if pooling is None else pooling
    if pooling_key not in POOLING_TYPES:
        raise ValueError(f"pooling must be None or one of {sorted(POOLING_TYPES)}, not {pooling!r}")
    if rope_scaling is not None and rope_scaling not in ROPE_SCALING:
        raise ValueError(f"rope_scaling must be None or one of {sorted(ROPE_SCALING)}")

    threads = n_threads if n_threads and n_threads > 0 else default_threads()
    threads_batch = n_threads_batch if n_threads_batch and n_threads_batch > 0 else threads

    params = lib.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = min(n_ubatch, n_batch)
    params.n_seq_max = n_seq_max
    params.n_threads = threads
    params.n_threads_batch = threads_batch
    params.embeddings = embeddings
    params.pooling_type = POOLING_TYPES[pooling_key]
    params.flash_attn_type = FLASH_ATTN[flash_attn]
    params.type_k = _ggml_type(type_k)
    params.type_v = _ggml_type(type_v)
    params.offload_kqv = offload_kqv
    params.rope_freq_base = rope_freq_base
    params.rope_freq_scale = rope_freq_scale
    if rope_scaling is not None:
        params.rope_scaling_type = ROPE_SCALING[rope_scaling]
    # None keeps libllama's own value (which it takes from the model)
    for name, value in (("yarn_ext_factor", yarn_ext_factor), ("yarn_attn_factor", yarn_attn_factor),
                        ("yarn_beta_fast", yarn_beta_fast), ("yarn_beta_slow", yarn_beta_slow)):
        if value is not None:
            setattr(params, name, value)
    params.yarn_orig_ctx = yarn_orig_ctx
    params.kv_unified = kv_unified
    params.swa_full = swa_full
    # 0 means n_batch: room for logits of every token of a full batch.  A server that reads
    # one row per sequence per step says so; libllama then reserves a far smaller graph.
    params.n_outputs_max = n_outputs_max
    params.n_outputs_max_per_seq = n_outputs_max_per_seq
    params.no_perf = no_perf
    return params
