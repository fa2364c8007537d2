"""The context, its slots and batches, and the KV cache."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from pydantic import field_validator

from ._fields import PERF, CacheType, Finite, Group, Switch, ThreadCount, option

__all__ = ["ContextSettings"]

_opt = partial(option, group=PERF)


class ContextSettings(Group):
    ctx_size: int = _opt(
        "-c", "--ctx-size", "--ctx_size", env="LLAMA_ARG_CTX_SIZE", default=4096, ge=0,
        le=2**31 - 1, metavar="N")
    """Size of the context (all slots together); 0 = the model's training context."""
    n_predict: int = _opt(
        "-n", "--n-predict", "--predict", env="LLAMA_ARG_N_PREDICT", default=-1, ge=-1,
        le=2**31 - 1, metavar="N")
    """Default maximum number of tokens to predict (-1 = until the end of text or the context is
    full)."""
    n_keep: int = _opt("--keep", default=0, ge=-1, le=2**31 - 1, metavar="N")
    """Default number of prompt tokens kept when the context is shifted (-1 = all)."""
    context_shift: bool = _opt(
        "--context-shift", env="LLAMA_ARG_CONTEXT_SHIFT", negative=("--no-context-shift",),
        default=True)
    """Shift the context (discarding old tokens after n_keep) instead of stopping when it is
    full."""
    threads: ThreadCount = _opt(
        "-t", "--threads", env="LLAMA_ARG_THREADS", default=None, ge=1, le=1024, metavar="N")
    """Threads for generation (default, or -1: all CPU cores)."""
    threads_batch: ThreadCount = _opt(
        "-tb", "--threads-batch", default=None, ge=1, le=1024, metavar="N")
    """Threads for batch and prompt processing (default, or -1: --threads)."""
    threads_http: ThreadCount = _opt(
        "--threads-http", env="LLAMA_ARG_THREADS_HTTP", default=None, ge=1, le=1024, metavar="N")
    """Worker threads for blocking per-request work (tokenizing, template rendering); default (or
    -1): max(cores - 1, parallel + 2)."""
    batch_size: int = _opt(
        "-b", "--batch-size", "--batch_size", env="LLAMA_ARG_BATCH", default=2048, ge=1,
        le=2**31 - 1, metavar="N")
    """Logical maximum batch size for prompt processing."""
    ubatch_size: int = _opt(
        "-ub", "--ubatch-size", env="LLAMA_ARG_UBATCH", default=512, ge=1, le=2**31 - 1,
        metavar="N")
    """Physical maximum batch size."""
    parallel: int = _opt(
        "-np", "--parallel", env="LLAMA_ARG_N_PARALLEL", default=1, ge=1, le=256, metavar="N")
    """Number of slots (requests processed at the same time); -1 (llama-server's 'auto') means the
    default."""
    cont_batching: bool = _opt(
        "-cb", "--cont-batching", env="LLAMA_ARG_CONT_BATCHING",
        negative=("-nocb", "--no-cont-batching"), default=True)
    """Continuous batching: new requests join the running batch."""
    queue_size: int = _opt("--queue-size", default=64, ge=0, le=1_000_000, metavar="N")
    """Requests that may wait for a free slot; when the queue is full the server answers 503 with
    Retry-After."""
    flash_attn: Switch = _opt(
        "-fa", "--flash-attn", env="LLAMA_ARG_FLASH_ATTN", default="auto", nargs="?", const="on",
        metavar="on|off|auto")
    """Flash attention: on, off or auto (-fa alone means on)."""
    cache_type_k: CacheType = _opt(
        "-ctk", "--cache-type-k", env="LLAMA_ARG_CACHE_TYPE_K", default="f16", metavar="TYPE")
    """KV cache data type for K."""
    cache_type_v: CacheType = _opt(
        "-ctv", "--cache-type-v", env="LLAMA_ARG_CACHE_TYPE_V", default="f16", metavar="TYPE")
    """KV cache data type for V."""
    kv_unified: bool = _opt(
        "-kvu", "--kv-unified", env="LLAMA_ARG_KV_UNIFIED", negative=("-no-kvu", "--no-kv-unified"),
        default=False)
    """One KV buffer shared by all slots instead of one stream per slot."""
    swa_full: bool = _opt("--swa-full", env="LLAMA_ARG_SWA_FULL", default=False)
    """Full-size KV cache for sliding-window-attention layers (more memory; a cached prompt can then
    always be reused)."""
    cache_prompt: bool = _opt(
        "--cache-prompt", env="LLAMA_ARG_CACHE_PROMPT", negative=("--no-cache-prompt",),
        default=True)
    """Default of the requests' cache_prompt: reuse a slot's cached prompt prefix."""
    cache_ram: int = _opt(
        "-cram", "--cache-ram", env="LLAMA_ARG_CACHE_RAM", default=8192, ge=-1, le=2**31 - 1,
        metavar="N")
    """Host memory (MiB) for prompt prefixes a slot is about to overwrite, brought back into any
    slot that needs them (0: off, -1: no limit)."""
    overlong_prompt: Literal["auto", "error", "truncate"] = _opt(
        "--overlong-prompt", env="LLAMASERVER_OVERLONG_PROMPT", default="auto",
        metavar="auto|error|truncate")
    """A prompt longer than a slot's context: 'error' answers 400 exceed_context_size_error (today's
    llama-server), 'truncate' keeps n_keep tokens and the end (the seed's server); 'auto': the error
    on the OpenAI and Anthropic endpoints, truncation on /completion and /infill."""
    cache_reuse: int = _opt(
        "--cache-reuse", env="LLAMA_ARG_CACHE_REUSE", default=0, ge=0, le=2**31 - 1, metavar="N")
    """Smallest chunk of a cached prompt worth reusing by shifting it in the KV cache (0 = off;
    needs cache_prompt)."""
    ctx_checkpoints: int = _opt(
        "-ctxcp", "--ctx-checkpoints", "--swa-checkpoints", env="LLAMA_ARG_CTX_CHECKPOINTS",
        default=32, ge=0, le=2**31 - 1, metavar="N")
    """Context checkpoints kept per slot, for models whose cache cannot be truncated (SWA,
    recurrent)."""
    checkpoint_min_step: int = _opt(
        "-cms", "--checkpoint-min-step", env="LLAMA_ARG_CHECKPOINT_MIN_SPACING_NT", default=8192,
        ge=0, le=2**31 - 1, metavar="N")
    """Fewest tokens between two context checkpoints (0 = no minimum)."""
    defrag_thold: Finite = _opt(
        "-dt", "--defrag-thold", env="LLAMA_ARG_DEFRAG_THOLD", default=-1.0, ge=-1.0, le=1.0,
        metavar="N")
    """KV cache defragmentation threshold (< 0 = disabled; recent libllama defragments on its
    own)."""
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = _opt(
        "--pooling", env="LLAMA_ARG_POOLING", default=None, metavar="{none,mean,cls,last,rank}")
    """Pooling type for embeddings (default: the model's)."""
    embedding: bool = _opt("--embedding", "--embeddings", env="LLAMA_ARG_EMBEDDINGS", default=False)
    """Serve embeddings (/embedding, /v1/embeddings)."""
    reranking: bool = _opt("--rerank", "--reranking", env="LLAMA_ARG_RERANKING", default=False)
    """Serve reranking (/rerank): embeddings with rank pooling, as --embedding --pooling rank."""
    embd_normalize: int = _opt("--embd-normalize", default=2, ge=-1, le=1024, metavar="N")
    """Default normalisation of embeddings: -1 none, 0 max-abs int16, 1 taxicab, 2 euclidean, >2
    p-norm."""
    spm_infill: bool = _opt("--spm-infill", default=False)
    """/infill uses the Suffix/Prefix/Middle order instead of Prefix/Suffix/Middle."""

    @field_validator("parallel", mode="before")
    @classmethod
    def _auto_parallel(cls, value: Any) -> Any:
        if value in (-1, "-1"):
            return cls.model_fields["parallel"].default
        return value
