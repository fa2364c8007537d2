"""The context, its slots and batches, and the KV cache."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ._fields import PERF, CacheType, Finite, Group, cli, to_switch

__all__ = ["ContextSettings"]


def _auto_is_none(value: Any) -> Any:
    # llama-server writes "use the default" as -1 (or 0) for thread counts
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
        return None
    return value


class ContextSettings(Group):
    ctx_size: int = Field(
        4096, ge=0, le=2**31 - 1, description="Size of the context (all slots together); 0 = "
        "the model's training context.",
        json_schema_extra=cli("-c", "--ctx-size", "--ctx_size", env="LLAMA_ARG_CTX_SIZE",
                              group=PERF, metavar="N"))
    n_predict: int = Field(
        -1, ge=-1, le=2**31 - 1, description="Default maximum number of tokens to predict "
        "(-1 = until the end of text or the context is full).",
        json_schema_extra=cli("-n", "--n-predict", "--predict", env="LLAMA_ARG_N_PREDICT",
                              group=PERF, metavar="N"))
    n_keep: int = Field(
        0, ge=-1, le=2**31 - 1, description="Default number of prompt tokens kept when the "
        "context is shifted (-1 = all).",
        json_schema_extra=cli("--keep", group=PERF, metavar="N"))
    context_shift: bool = Field(
        True, description="Shift the context (discarding old tokens after n_keep) instead of "
        "stopping when it is full.",
        json_schema_extra=cli("--context-shift", negative=("--no-context-shift",),
                              env="LLAMA_ARG_CONTEXT_SHIFT", group=PERF))
    threads: int | None = Field(
        None, ge=1, le=1024, description="Threads for generation (default, or -1: all CPU "
        "cores).",
        json_schema_extra=cli("-t", "--threads", env="LLAMA_ARG_THREADS", group=PERF,
                              metavar="N"))
    threads_batch: int | None = Field(
        None, ge=1, le=1024, description="Threads for batch and prompt processing (default, "
        "or -1: --threads).",
        json_schema_extra=cli("-tb", "--threads-batch", group=PERF, metavar="N"))
    threads_http: int | None = Field(
        None, ge=1, le=1024, description="Worker threads for blocking per-request work "
        "(tokenizing, template rendering); default (or -1): max(cores - 1, parallel + 2).",
        json_schema_extra=cli("--threads-http", env="LLAMA_ARG_THREADS_HTTP", group=PERF,
                              metavar="N"))
    batch_size: int = Field(
        2048, ge=1, le=2**31 - 1, description="Logical maximum batch size for prompt "
        "processing.",
        json_schema_extra=cli("-b", "--batch-size", "--batch_size", env="LLAMA_ARG_BATCH",
                              group=PERF, metavar="N"))
    ubatch_size: int = Field(
        512, ge=1, le=2**31 - 1, description="Physical maximum batch size.",
        json_schema_extra=cli("-ub", "--ubatch-size", env="LLAMA_ARG_UBATCH", group=PERF,
                              metavar="N"))
    parallel: int = Field(
        1, ge=1, le=256, description="Number of slots (requests processed at the same time); "
        "-1 (llama-server's 'auto') means the default.",
        json_schema_extra=cli("-np", "--parallel", env="LLAMA_ARG_N_PARALLEL", group=PERF,
                              metavar="N"))
    cont_batching: bool = Field(
        True, description="Continuous batching: new requests join the running batch.",
        json_schema_extra=cli("-cb", "--cont-batching", negative=("-nocb",
                              "--no-cont-batching"), env="LLAMA_ARG_CONT_BATCHING", group=PERF))
    queue_size: int = Field(
        64, ge=0, le=1_000_000, description="Requests that may wait for a free slot; when the "
        "queue is full the server answers 503 with Retry-After.",
        json_schema_extra=cli("--queue-size", group=PERF, metavar="N"))
    flash_attn: Literal["on", "off", "auto"] = Field(
        "auto", description="Flash attention: on, off or auto (-fa alone means on).",
        json_schema_extra=cli("-fa", "--flash-attn", env="LLAMA_ARG_FLASH_ATTN", group=PERF,
                              nargs="?", const="on", metavar="on|off|auto"))
    cache_type_k: CacheType = Field(
        "f16", description="KV cache data type for K.",
        json_schema_extra=cli("-ctk", "--cache-type-k", env="LLAMA_ARG_CACHE_TYPE_K",
                              group=PERF, metavar="TYPE"))
    cache_type_v: CacheType = Field(
        "f16", description="KV cache data type for V.",
        json_schema_extra=cli("-ctv", "--cache-type-v", env="LLAMA_ARG_CACHE_TYPE_V",
                              group=PERF, metavar="TYPE"))
    kv_unified: bool = Field(
        False, description="One KV buffer shared by all slots instead of one stream per slot.",
        json_schema_extra=cli("-kvu", "--kv-unified", negative=("-no-kvu", "--no-kv-unified"),
                              env="LLAMA_ARG_KV_UNIFIED", group=PERF))
    swa_full: bool = Field(
        False, description="Full-size KV cache for sliding-window-attention layers (more "
        "memory; a cached prompt can then always be reused).",
        json_schema_extra=cli("--swa-full", env="LLAMA_ARG_SWA_FULL", group=PERF))
    cache_prompt: bool = Field(
        True, description="Default of the requests' cache_prompt: reuse a slot's cached "
        "prompt prefix.",
        json_schema_extra=cli("--cache-prompt", negative=("--no-cache-prompt",),
                              env="LLAMA_ARG_CACHE_PROMPT", group=PERF))
    cache_ram: int = Field(
        8192, ge=-1, le=2**31 - 1, description="Host memory (MiB) for prompt prefixes a slot "
        "is about to overwrite, brought back into any slot that needs them (0: off, -1: no "
        "limit).",
        json_schema_extra=cli("-cram", "--cache-ram", env="LLAMA_ARG_CACHE_RAM", group=PERF,
                              metavar="N"))
    overlong_prompt: Literal["auto", "error", "truncate"] = Field(
        "auto", description="A prompt longer than a slot's context: 'error' answers 400 "
        "exceed_context_size_error (today's llama-server), 'truncate' keeps n_keep tokens and "
        "the end (the seed's server); 'auto': the error on the OpenAI and Anthropic endpoints, "
        "truncation on /completion and /infill.",
        json_schema_extra=cli("--overlong-prompt", env="LLAMASERVER_OVERLONG_PROMPT",
                              group=PERF, metavar="auto|error|truncate"))
    cache_reuse: int = Field(
        0, ge=0, le=2**31 - 1, description="Smallest chunk of a cached prompt worth reusing "
        "by shifting it in the KV cache (0 = off; needs cache_prompt).",
        json_schema_extra=cli("--cache-reuse", env="LLAMA_ARG_CACHE_REUSE", group=PERF,
                              metavar="N"))
    ctx_checkpoints: int = Field(
        32, ge=0, le=2**31 - 1, description="Context checkpoints kept per slot, for models "
        "whose cache cannot be truncated (SWA, recurrent).",
        json_schema_extra=cli("-ctxcp", "--ctx-checkpoints", "--swa-checkpoints",
                              env="LLAMA_ARG_CTX_CHECKPOINTS", group=PERF, metavar="N"))
    checkpoint_min_step: int = Field(
        8192, ge=0, le=2**31 - 1, description="Fewest tokens between two context checkpoints "
        "(0 = no minimum).",
        json_schema_extra=cli("-cms", "--checkpoint-min-step",
                              env="LLAMA_ARG_CHECKPOINT_MIN_SPACING_NT", group=PERF,
                              metavar="N"))
    defrag_thold: Finite = Field(
        -1.0, ge=-1.0, le=1.0, description="KV cache defragmentation threshold (< 0 = "
        "disabled; recent libllama defragments on its own).",
        json_schema_extra=cli("-dt", "--defrag-thold", env="LLAMA_ARG_DEFRAG_THOLD",
                              group=PERF, metavar="N"))
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = Field(
        None, description="Pooling type for embeddings (default: the model's).",
        json_schema_extra=cli("--pooling", env="LLAMA_ARG_POOLING", group=PERF,
                              metavar="{none,mean,cls,last,rank}"))
    embedding: bool = Field(
        False, description="Serve embeddings (/embedding, /v1/embeddings).",
        json_schema_extra=cli("--embedding", "--embeddings", env="LLAMA_ARG_EMBEDDINGS",
                              group=PERF))
    reranking: bool = Field(
        False, description="Serve reranking (/rerank): embeddings with rank pooling, as "
        "--embedding --pooling rank.",
        json_schema_extra=cli("--rerank", "--reranking", env="LLAMA_ARG_RERANKING",
                              group=PERF))
    embd_normalize: int = Field(
        2, ge=-1, le=1024, description="Default normalisation of embeddings: -1 none, 0 "
        "max-abs int16, 1 taxicab, 2 euclidean, >2 p-norm.",
        json_schema_extra=cli("--embd-normalize", group=PERF, metavar="N"))
    spm_infill: bool = Field(
        False, description="/infill uses the Suffix/Prefix/Middle order instead of "
        "Prefix/Suffix/Middle.",
        json_schema_extra=cli("--spm-infill", group=PERF))

    @field_validator("threads", "threads_batch", "threads_http", mode="before")
    @classmethod
    def _default_threads(cls, value: Any) -> Any:
        return _auto_is_none(value)

    @field_validator("parallel", mode="before")
    @classmethod
    def _auto_parallel(cls, value: Any) -> Any:
        if value in (-1, "-1"):
            return cls.model_fields["parallel"].default
        return value

    @field_validator("flash_attn", mode="before")
    @classmethod
    def _flash_attn_switch(cls, value: Any) -> Any:
        return to_switch(value)
