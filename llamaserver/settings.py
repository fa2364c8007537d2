"""Every setting of the server, defined once.

Each field carries its description, default and bounds; ``json_schema_extra`` holds the
command-line spelling (``flags``, and ``negative_flags`` for booleans that can be switched
off), the environment variable read when the flag is absent (``env``), and argparse hints
(``nargs``/``const``/``metavar``) where a flag is unusual.  :mod:`llamaserver.cli` builds
its parser from these fields, so a flag is never written down twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ServerSettings", "CacheType"]

CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]


def _cli(*flags: str, env: str | None = None, negative: tuple[str, ...] = (), group: str,
         **argparse_hints: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"flags": list(flags), "group": group}
    if env:
        extra["env"] = env
    if negative:
        extra["negative_flags"] = list(negative)
    extra.update(argparse_hints)
    return extra


_MODEL = "model"
_PERF = "context and performance"
_HW = "hardware"
_SERVER = "server"
_LOG = "logging"


class ServerSettings(BaseModel):
    """Configuration of one :class:`llamaserver.LlamaServer`.

    Build it directly (``ServerSettings(ctx_size=2048, parallel=4)``), from the command line
    (:func:`llamaserver.cli.parse_args`), or pass the same keywords to ``LlamaServer``.
    """

    model_config = ConfigDict(protected_namespaces=(), extra="forbid", validate_assignment=True)

    # ---- model -------------------------------------------------------------------------
    model: Path | None = Field(
        None, description="Path of the GGUF model file. Default: the bundled default model "
        "(llama_ffi.default_model_path()).",
        json_schema_extra=_cli("-m", "--model", env="LLAMA_ARG_MODEL", group=_MODEL,
                               metavar="FNAME"))
    model_url: str | None = Field(
        None, description="Download the model from this URL (kept in the cache directory) "
        "when --model is not given.",
        json_schema_extra=_cli("-mu", "--model-url", env="LLAMA_ARG_MODEL_URL", group=_MODEL,
                               metavar="MODEL_URL"))
    hf_repo: str | None = Field(
        None, description="Hugging Face repository (user/name) to download the model from; "
        "use with --hf-file.",
        json_schema_extra=_cli("-hfr", "--hf-repo", env="LLAMA_ARG_HF_REPO", group=_MODEL,
                               metavar="REPO"))
    hf_file: str | None = Field(
        None, description="File inside --hf-repo to download.",
        json_schema_extra=_cli("-hff", "--hf-file", env="LLAMA_ARG_HF_FILE", group=_MODEL,
                               metavar="FILE"))
    hf_token: str | None = Field(
        None, description="Hugging Face access token for gated repositories (never logged).",
        json_schema_extra=_cli("-hft", "--hf-token", env="HF_TOKEN", group=_MODEL,
                               metavar="TOKEN"))
    alias: str | None = Field(
        None, description="Name of the model in API responses (default: the model file path).",
        json_schema_extra=_cli("-a", "--alias", env="LLAMA_ARG_ALIAS", group=_MODEL,
                               metavar="ALIAS"))
    lora: list[Path] = Field(
        default_factory=list, description="LoRA adapter file to apply at scale 1 (repeatable, "
        "or comma-separated). GET/POST /lora-adapters list them and set their scales.",
        json_schema_extra=_cli("--lora", group=_MODEL, metavar="FNAME"))
    lora_scaled: list[tuple[Path, float]] = Field(
        default_factory=list, description="LoRA adapter with its scale, FNAME:SCALE "
        "(repeatable, or comma-separated).",
        json_schema_extra=_cli("--lora-scaled", group=_MODEL, metavar="FNAME:SCALE"))
    lora_init_without_apply: bool = Field(
        False, description="Load the LoRA adapters at scale 0; apply them later through "
        "POST /lora-adapters or a request's `lora` field.",
        json_schema_extra=_cli("--lora-init-without-apply", group=_MODEL))
    lora_base: Path | None = Field(
        None, description="Accepted for compatibility and ignored: libllama applies an adapter "
        "to the loaded model.",
        json_schema_extra=_cli("--lora-base", group=_MODEL, metavar="FNAME"))
    mmproj: Path | None = Field(
        None, description="Multimodal projector file (LLaVA-style image input).",
        json_schema_extra=_cli("--mmproj", env="LLAMA_ARG_MMPROJ", group=_MODEL,
                               metavar="MMPROJ_FILE"))
    chat_template: str | None = Field(
        None, description="Chat template: a built-in name (chatml, llama3, ...) or Jinja "
        "source. Default: the template stored in the model.",
        json_schema_extra=_cli("--chat-template", env="LLAMA_ARG_CHAT_TEMPLATE", group=_MODEL,
                               metavar="JINJA_TEMPLATE"))
    chat_template_file: Path | None = Field(
        None, description="Read the chat template (Jinja source) from this file.",
        json_schema_extra=_cli("--chat-template-file", env="LLAMA_ARG_CHAT_TEMPLATE_FILE",
                               group=_MODEL, metavar="FNAME"))
    system_prompt_file: Path | None = Field(
        None, description="JSON file {\"prompt\", \"anti_prompt\", \"assistant_name\"} (or a "
        "plain text file) with the system prompt shared by all slots.",
        json_schema_extra=_cli("-spf", "--system-prompt-file", group=_MODEL, metavar="FNAME"))

    # ---- context and performance -------------------------------------------------------
    ctx_size: int = Field(
        4096, ge=0, le=2**31 - 1, description="Size of the context (all slots together); 0 = "
        "the model's training context.",
        json_schema_extra=_cli("-c", "--ctx-size", "--ctx_size", env="LLAMA_ARG_CTX_SIZE",
                               group=_PERF, metavar="N"))
    n_predict: int = Field(
        -1, ge=-1, le=2**31 - 1, description="Default maximum number of tokens to predict "
        "(-1 = until the end of text or the context is full).",
        json_schema_extra=_cli("-n", "--n-predict", "--predict", env="LLAMA_ARG_N_PREDICT",
                               group=_PERF, metavar="N"))
    n_keep: int = Field(
        0, ge=-1, le=2**31 - 1, description="Default number of prompt tokens kept when the "
        "context is shifted (-1 = all).",
        json_schema_extra=_cli("--keep", group=_PERF, metavar="N"))
    context_shift: bool = Field(
        True, description="Shift the context (discarding old tokens after n_keep) instead of "
        "stopping when it is full.",
        json_schema_extra=_cli("--context-shift", negative=("--no-context-shift",),
                               env="LLAMA_ARG_CONTEXT_SHIFT", group=_PERF))
    threads: int | None = Field(
        None, ge=1, le=1024, description="Threads for generation (default: all CPU cores).",
        json_schema_extra=_cli("-t", "--threads", env="LLAMA_ARG_THREADS", group=_PERF,
                               metavar="N"))
    threads_batch: int | None = Field(
        None, ge=1, le=1024, description="Threads for batch and prompt processing (default: "
        "--threads).",
        json_schema_extra=_cli("-tb", "--threads-batch", group=_PERF, metavar="N"))
    threads_http: int | None = Field(
        None, ge=1, le=1024, description="Worker threads for blocking per-request work "
        "(tokenizing, template rendering); default: max(cores - 1, parallel + 2).",
        json_schema_extra=_cli("--threads-http", env="LLAMA_ARG_THREADS_HTTP", group=_PERF,
                               metavar="N"))
    batch_size: int = Field(
        2048, ge=1, le=2**31 - 1, description="Logical maximum batch size for prompt "
        "processing.",
        json_schema_extra=_cli("-b", "--batch-size", "--batch_size", env="LLAMA_ARG_BATCH",
                               group=_PERF, metavar="N"))
    ubatch_size: int = Field(
        512, ge=1, le=2**31 - 1, description="Physical maximum batch size.",
        json_schema_extra=_cli("-ub", "--ubatch-size", env="LLAMA_ARG_UBATCH", group=_PERF,
                               metavar="N"))
    parallel: int = Field(
        1, ge=1, le=256, description="Number of slots (requests processed at the same time).",
        json_schema_extra=_cli("-np", "--parallel", env="LLAMA_ARG_N_PARALLEL", group=_PERF,
                               metavar="N"))
    cont_batching: bool = Field(
        True, description="Continuous batching: new requests join the running batch.",
        json_schema_extra=_cli("-cb", "--cont-batching", negative=("-nocb",
                               "--no-cont-batching"), env="LLAMA_ARG_CONT_BATCHING", group=_PERF))
    queue_size: int = Field(
        64, ge=0, le=1_000_000, description="Requests that may wait for a free slot; when the "
        "queue is full the server answers 503 with Retry-After.",
        json_schema_extra=_cli("--queue-size", group=_PERF, metavar="N"))
    flash_attn: Literal["on", "off", "auto"] = Field(
        "auto", description="Flash attention: on, off or auto (-fa alone means on).",
        json_schema_extra=_cli("-fa", "--flash-attn", env="LLAMA_ARG_FLASH_ATTN", group=_PERF,
                               nargs="?", const="on", metavar="on|off|auto"))
    cache_type_k: CacheType = Field(
        "f16", description="KV cache data type for K.",
        json_schema_extra=_cli("-ctk", "--cache-type-k", env="LLAMA_ARG_CACHE_TYPE_K",
                               group=_PERF, metavar="TYPE"))
    cache_type_v: CacheType = Field(
        "f16", description="KV cache data type for V.",
        json_schema_extra=_cli("-ctv", "--cache-type-v", env="LLAMA_ARG_CACHE_TYPE_V",
                               group=_PERF, metavar="TYPE"))
    defrag_thold: float = Field(
        -1.0, ge=-1.0, le=1.0, description="KV cache defragmentation threshold (< 0 = "
        "disabled; recent libllama defragments on its own).",
        json_schema_extra=_cli("-dt", "--defrag-thold", env="LLAMA_ARG_DEFRAG_THOLD",
                               group=_PERF, metavar="N"))
    grp_attn_n: int = Field(
        1, ge=1, le=2**20, description="Self-extend group attention factor (1 = disabled).",
        json_schema_extra=_cli("-gan", "--grp-attn-n", env="LLAMA_ARG_GRP_ATTN_N", group=_PERF,
                               metavar="N"))
    grp_attn_w: int = Field(
        512, ge=1, le=2**31 - 1, description="Self-extend group attention width.",
        json_schema_extra=_cli("-gaw", "--grp-attn-w", env="LLAMA_ARG_GRP_ATTN_W", group=_PERF,
                               metavar="N"))
    rope_scaling: Literal["none", "linear", "yarn"] | None = Field(
        None, description="RoPE scaling method (default: from the model).",
        json_schema_extra=_cli("--rope-scaling", env="LLAMA_ARG_ROPE_SCALING_TYPE",
                               group=_PERF, metavar="{none,linear,yarn}"))
    rope_scale: float = Field(
        0.0, ge=0.0, description="RoPE context scaling factor: sets rope-freq-scale to 1/N "
        "(0 = unset).",
        json_schema_extra=_cli("--rope-scale", env="LLAMA_ARG_ROPE_SCALE", group=_PERF,
                               metavar="N"))
    rope_freq_base: float = Field(
        0.0, ge=0.0, description="RoPE base frequency (0 = from the model).",
        json_schema_extra=_cli("--rope-freq-base", env="LLAMA_ARG_ROPE_FREQ_BASE", group=_PERF,
                               metavar="N"))
    rope_freq_scale: float = Field(
        0.0, ge=0.0, description="RoPE frequency scaling factor; expands the context by 1/N "
        "(0 = from the model).",
        json_schema_extra=_cli("--rope-freq-scale", env="LLAMA_ARG_ROPE_FREQ_SCALE",
                               group=_PERF, metavar="N"))
    yarn_orig_ctx: int = Field(
        0, ge=0, le=2**31 - 1, description="YaRN: original context size of the model (0 = "
        "the training context).",
        json_schema_extra=_cli("--yarn-orig-ctx", env="LLAMA_ARG_YARN_ORIG_CTX", group=_PERF,
                               metavar="N"))
    yarn_ext_factor: float = Field(
        -1.0, description="YaRN: extrapolation mix factor (0.0 = full interpolation, negative "
        "= from the model, usually 1.0).",
        json_schema_extra=_cli("--yarn-ext-factor", env="LLAMA_ARG_YARN_EXT_FACTOR",
                               group=_PERF, metavar="N"))
    yarn_attn_factor: float = Field(
        -1.0, description="YaRN: scale of sqrt(t) / attention magnitude (negative = from the "
        "model, usually 1.0).",
        json_schema_extra=_cli("--yarn-attn-factor", env="LLAMA_ARG_YARN_ATTN_FACTOR",
                               group=_PERF, metavar="N"))
    yarn_beta_slow: float = Field(
        -1.0, description="YaRN: high correction dim or alpha (negative = from the model, "
        "usually 1.0).",
        json_schema_extra=_cli("--yarn-beta-slow", env="LLAMA_ARG_YARN_BETA_SLOW", group=_PERF,
                               metavar="N"))
    yarn_beta_fast: float = Field(
        -1.0, description="YaRN: low correction dim or beta (negative = from the model, "
        "usually 32.0).",
        json_schema_extra=_cli("--yarn-beta-fast", env="LLAMA_ARG_YARN_BETA_FAST", group=_PERF,
                               metavar="N"))
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = Field(
        None, description="Pooling type for embeddings (default: the model's).",
        json_schema_extra=_cli("--pooling", env="LLAMA_ARG_POOLING", group=_PERF,
                               metavar="{none,mean,cls,last,rank}"))
    embedding: bool = Field(
        False, description="Serve embeddings (/embedding, /v1/embeddings).",
        json_schema_extra=_cli("--embedding", "--embeddings", env="LLAMA_ARG_EMBEDDINGS",
                               group=_PERF))
    spm_infill: bool = Field(
        False, description="/infill uses the Suffix/Prefix/Middle order instead of "
        "Prefix/Suffix/Middle.",
        json_schema_extra=_cli("--spm-infill", group=_PERF))
    seed: int = Field(
        -1, ge=-1, le=2**32 - 1, description="Default RNG seed of requests that give none "
        "(-1 = random).",
        json_schema_extra=_cli("-s", "--seed", group=_PERF, metavar="SEED"))

    # ---- hardware ----------------------------------------------------------------------
    n_gpu_layers: int = Field(
        0, ge=-1, le=2**31 - 1, description="Layers to offload to the GPU when the library "
        "has a GPU backend (-1 = all).",
        json_schema_extra=_cli("-ngl", "--n-gpu-layers", "--gpu-layers",
                               env="LLAMA_ARG_N_GPU_LAYERS", group=_HW, metavar="N"))
    split_mode: Literal["none", "layer", "row"] = Field(
        "layer", description="How to split the model across several GPUs.",
        json_schema_extra=_cli("-sm", "--split-mode", env="LLAMA_ARG_SPLIT_MODE", group=_HW,
                               metavar="{none,layer,row}"))
    tensor_split: list[float] | None = Field(
        None, description="Share of the model per GPU, comma-separated (e.g. 3,2).",
        json_schema_extra=_cli("-ts", "--tensor-split", env="LLAMA_ARG_TENSOR_SPLIT",
                               group=_HW, metavar="SPLIT"))
    main_gpu: int = Field(
        0, ge=0, le=1024, description="GPU for small tensors and scratch buffers "
        "(split-mode none/row).",
        json_schema_extra=_cli("-mg", "--main-gpu", env="LLAMA_ARG_MAIN_GPU", group=_HW,
                               metavar="i"))
    no_kv_offload: bool = Field(
        False, description="Keep the KV cache in host memory even when layers are offloaded.",
        json_schema_extra=_cli("-nkvo", "--no-kv-offload", group=_HW))
    mlock: bool = Field(
        False, description="Lock the model in memory so it is never swapped out.",
        json_schema_extra=_cli("--mlock", group=_HW))
    no_mmap: bool = Field(
        False, description="Read the model into memory instead of memory-mapping it.",
        json_schema_extra=_cli("--no-mmap", group=_HW))
    numa: Literal["distribute", "isolate", "numactl"] | None = Field(
        None, description="NUMA strategy: distribute, isolate or numactl (--numa alone means "
        "distribute).",
        json_schema_extra=_cli("--numa", env="LLAMA_ARG_NUMA", group=_HW, nargs="?",
                               const="distribute", metavar="STRATEGY"))

    # ---- server ------------------------------------------------------------------------
    host: str = Field(
        "127.0.0.1", description="Address to listen on.",
        json_schema_extra=_cli("--host", env="LLAMA_ARG_HOST", group=_SERVER, metavar="HOST"))
    port: int = Field(
        8080, ge=0, le=65535, description="Port to listen on (0 = any free port).",
        json_schema_extra=_cli("--port", env="LLAMA_ARG_PORT", group=_SERVER, metavar="PORT"))
    path: Path | None = Field(
        None, description="Directory of static files to serve at / (default: none).",
        json_schema_extra=_cli("--path", env="LLAMA_ARG_STATIC_PATH", group=_SERVER,
                               metavar="PATH"))
    api_prefix: str = Field(
        "", description="URL prefix of every endpoint (e.g. /llama).",
        json_schema_extra=_cli("--api-prefix", env="LLAMA_ARG_API_PREFIX", group=_SERVER,
                               metavar="PREFIX"))
    api_key: list[str] = Field(
        default_factory=list, description="API key required in 'Authorization: Bearer KEY' or "
        "'X-Api-Key: KEY' (repeatable; the environment variable takes a comma-separated list).",
        json_schema_extra=_cli("--api-key", env="LLAMA_API_KEY", group=_SERVER, metavar="KEY"))
    api_key_file: Path | None = Field(
        None, description="File with one API key per line (added to --api-key).",
        json_schema_extra=_cli("--api-key-file", env="LLAMA_ARG_API_KEY_FILE", group=_SERVER,
                               metavar="FNAME"))
    ssl_key_file: Path | None = Field(
        None, description="PEM-encoded private key for HTTPS.",
        json_schema_extra=_cli("--ssl-key-file", env="LLAMA_ARG_SSL_KEY_FILE", group=_SERVER,
                               metavar="FNAME"))
    ssl_cert_file: Path | None = Field(
        None, description="PEM-encoded certificate for HTTPS.",
        json_schema_extra=_cli("--ssl-cert-file", env="LLAMA_ARG_SSL_CERT_FILE", group=_SERVER,
                               metavar="FNAME"))
    timeout: int = Field(
        600, ge=1, le=86_400, description="Read/write timeout of a connection, in seconds.",
        json_schema_extra=_cli("-to", "--timeout", env="LLAMA_ARG_TIMEOUT", group=_SERVER,
                               metavar="N"))
    endpoint_slots: bool = Field(
        True, description="Serve GET /slots and slot data in /health?include_slots (they may "
        "contain prompts).",
        json_schema_extra=_cli("--slots", negative=("--no-slots", "--slots-endpoint-disable"),
                               env="LLAMA_ARG_ENDPOINT_SLOTS", group=_SERVER))
    endpoint_metrics: bool = Field(
        False, description="Serve Prometheus metrics at GET /metrics.",
        json_schema_extra=_cli("--metrics", env="LLAMA_ARG_ENDPOINT_METRICS", group=_SERVER))
    endpoint_props: bool = Field(
        False, description="Allow POST /props to change server properties.",
        json_schema_extra=_cli("--props", env="LLAMA_ARG_ENDPOINT_PROPS", group=_SERVER))
    slot_save_path: Path | None = Field(
        None, description="Directory where slot prompt caches are saved and restored; the "
        "slot save/restore endpoints are disabled without it.",
        json_schema_extra=_cli("--slot-save-path", group=_SERVER, metavar="PATH"))

    # ---- logging -----------------------------------------------------------------------
    verbose: bool = Field(
        False, description="Verbose logging, including requests and responses of /completion "
        "(API keys are never logged).",
        json_schema_extra=_cli("-v", "--verbose", group=_LOG))
    log_disable: bool = Field(
        False, description="Do not write a log file; log to the console only.",
        json_schema_extra=_cli("--log-disable", group=_LOG))
    log_format: Literal["json", "text"] = Field(
        "text", description="Format of log records.",
        json_schema_extra=_cli("--log-format", group=_LOG, metavar="{json,text}"))
    log_file: Path | None = Field(
        None, description="Also write the log to this file (unless --log-disable).",
        json_schema_extra=_cli("--log-file", env="LLAMA_ARG_LOG_FILE", group=_LOG,
                               metavar="FNAME"))

    # ---- coercions shared by the CLI, the environment and Python callers ---------------
    @field_validator("tensor_split", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p for p in value.replace("/", ",").split(",") if p.strip()]
            return [float(p) for p in parts] or None
        return value

    @field_validator("tensor_split")
    @classmethod
    def _non_negative_split(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(v < 0 or v != v or v == float("inf") for v in value):
            raise ValueError("tensor split values must be finite and non-negative")
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("lora", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, (str, Path)):
            value = [value]
        if isinstance(value, list):
            return [part for item in value
                    for part in (str(item).split(",") if isinstance(item, (str, Path)) else [item])
                    if part]
        return value

    @field_validator("lora_scaled", mode="before")
    @classmethod
    def _scaled_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return value
        out: list[Any] = []
        for item in value:
            if not isinstance(item, str):
                out.append(item)
                continue
            for part in filter(None, item.split(",")):
                path, sep, scale = part.rpartition(":")
                if not sep or not path:
                    raise ValueError(f"{part!r} is not FNAME:SCALE")
                out.append((path, scale))
        return out

    @field_validator("flash_attn", mode="before")
    @classmethod
    def _flash_attn_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return {"1": "on", "true": "on", "enabled": "on", "0": "off", "false": "off",
                    "disabled": "off"}.get(lowered, lowered)
        return value

    @field_validator("api_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            value = "/" + value
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ServerSettings":
        if self.hf_file and not self.hf_repo:
            raise ValueError("--hf-file needs --hf-repo")
        if bool(self.ssl_key_file) != bool(self.ssl_cert_file):
            raise ValueError("HTTPS needs both --ssl-key-file and --ssl-cert-file")
        return self

    # ---- derived values ----------------------------------------------------------------
    def all_api_keys(self) -> list[str]:
        """--api-key values plus the lines of --api-key-file (blank lines ignored)."""
        keys = list(self.api_key)
        if self.api_key_file is not None:
            text = Path(self.api_key_file).read_text(encoding="utf-8")
            keys.extend(line.strip() for line in text.splitlines() if line.strip())
        return keys

    def __repr_args__(self) -> Any:  # keys and tokens must never reach a log line through repr()
        for name, value in super().__repr_args__():
            if name in ("api_key", "hf_token") and value:
                value = "<hidden>"
            yield name, value
