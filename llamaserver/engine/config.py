"""``EngineConfig``: everything the engine is started with, typed, with one set of defaults.

The server builds it from its settings in one function (``llamaserver._engine_config``);
files named by the settings (chat template, system prompt) are read there, so a bad one is a
start-up error before the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._speculative import DraftModelConfig, SpecConfig

__all__ = ["EngineConfig", "SpecConfig", "DraftModelConfig"]


@dataclass(frozen=True)
class EngineConfig:
    model: Path
    # model placement
    n_gpu_layers: int = 0
    main_gpu: int = 0
    split_mode: str = "layer"
    tensor_split: tuple[float, ...] | None = None
    rpc_servers: tuple[str, ...] = ()      # rpc-server host:port: their devices are added
    devices: tuple[str, ...] | None = None  # device names (() = the CPU only); None: see _loader
    use_mmap: bool = True
    use_mlock: bool = False
    numa: str | None = None
    # LoRA adapters: file and initial server-wide scale
    loras: tuple[tuple[Path, float], ...] = ()
    # slots and the context they share
    n_slots: int = 1
    ctx_size: int = 4096           # all slots together; 0 = the model's training context
    n_batch: int = 2048
    n_ubatch: int = 512
    threads: int | None = None
    threads_batch: int | None = None
    flash_attn: str = "auto"
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    offload_kqv: bool = True
    kv_unified: bool = False        # one KV buffer for every slot (else a stream per slot)
    swa_full: bool = False
    rope_freq_base: float = 0.0     # 0 = the model's
    rope_freq_scale: float = 0.0
    rope_scaling: str | None = None
    yarn_orig_ctx: int = 0
    yarn_ext_factor: float | None = None   # None = the model's
    yarn_attn_factor: float | None = None
    yarn_beta_fast: float | None = None
    yarn_beta_slow: float | None = None
    # host memory (MiB) for prompt prefixes a slot is about to overwrite; 0: none, -1: no bound
    cache_ram_mib: int = 8192
    # speculative decoding from n-grams of the prompt and the text so far; None: off
    speculative: SpecConfig | None = None
    # scheduling
    queue_size: int = 64
    cont_batching: bool = True
    context_shift: bool = True
    grp_attn_n: int = 1             # self-extend (1 = off)
    grp_attn_w: int = 512
    # embeddings (a second context)
    embedding: bool = False
    pooling: str | None = None      # None = the model's ("mean" for a generative model)
    # multimodal projector (mmproj GGUF); None: text only
    mmproj: Path | None = None
    mmproj_offload: bool = True
    image_min_tokens: int | None = None
    image_max_tokens: int | None = None
    media_max_bytes: int = 20 * 1024 * 1024
    # chat template: a builtin name or Jinja source; None = the model's own.  Without jinja,
    # libllama renders the formats it recognizes (llama-server's --no-jinja).
    chat_template: str | None = None
    jinja: bool = True
    # the shared system prompt from the start (the seed's -spf)
    system_prompt: str = ""
    user_name: str = ""
    assistant_name: str = ""
    # where slots are saved and restored; None = slot files are not served
    slot_save_path: Path | None = None

    @property
    def remote_devices(self) -> bool:
        """Whether layers may go to devices behind rpc-servers (the engine then survives their
        death; see ``llama_ffi.guard_native_aborts``)."""
        return bool(self.rpc_servers) or any(d.startswith("RPC") for d in self.devices or ())
