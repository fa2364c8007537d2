"""The engine's configuration from the server's settings: the one place that maps them.

Files the settings name (the chat template, the seed's system prompt file) are read here, so a
missing or malformed one is a start-up error naming the file, before the model loads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .engine import EngineConfig
from .engine.config import DraftModelConfig, SpecConfig
from .settings import ServerSettings

__all__ = ["ConfigError", "check_files", "engine_config"]

_log = logging.getLogger("llamaserver")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and says why."""


def engine_config(settings: ServerSettings, model: Path | None = None,
                  mmproj: Path | None = None) -> EngineConfig:
    """``model`` and ``mmproj`` are the resolved files (downloads done); default: the
    settings' (and for the model, the bundled default model)."""
    import llama_ffi

    s = settings
    path = model or s.model or llama_ffi.default_model_path()
    mmproj = mmproj or s.mmproj
    if s.lora_base:
        _log.warning("--lora-base is ignored: libllama applies adapters to the loaded model")
    initial = 0.0 if s.lora_init_without_apply else None
    loras = [(Path(p), 1.0 if initial is None else initial) for p in s.lora]
    loras += [(Path(p), float(scale) if initial is None else initial) for p, scale in s.lora_scaled]
    text, user, assistant = (read_system_prompt_file(Path(s.system_prompt_file))
                             if s.system_prompt_file else ("", "", ""))
    return EngineConfig(
        model=Path(path),
        n_gpu_layers=s.n_gpu_layers, main_gpu=s.main_gpu, split_mode=s.split_mode,
        tensor_split=tuple(s.tensor_split) if s.tensor_split else None,
        rpc_servers=tuple(s.rpc or ()),
        devices=None if s.device is None else tuple(d for d in s.device if d != "none"),
        use_mmap=not s.no_mmap, use_mlock=s.mlock, numa=s.numa,
        loras=tuple(loras),
        n_slots=s.parallel, ctx_size=s.ctx_size, n_batch=s.batch_size, n_ubatch=s.ubatch_size,
        threads=s.threads, threads_batch=s.threads_batch or s.threads,
        flash_attn=s.flash_attn, cache_type_k=s.cache_type_k, cache_type_v=s.cache_type_v,
        offload_kqv=not s.no_kv_offload, kv_unified=s.kv_unified, swa_full=s.swa_full,
        rope_freq_base=s.rope_freq_base,
        rope_freq_scale=1.0 / s.rope_scale if s.rope_scale else s.rope_freq_scale,
        rope_scaling=s.rope_scaling, yarn_orig_ctx=s.yarn_orig_ctx,
        yarn_ext_factor=_model_default(s.yarn_ext_factor),
        yarn_attn_factor=_model_default(s.yarn_attn_factor),
        yarn_beta_fast=_model_default(s.yarn_beta_fast),
        yarn_beta_slow=_model_default(s.yarn_beta_slow),
        cache_ram_mib=s.cache_ram,
        speculative=_speculative(s),
        queue_size=s.queue_size, cont_batching=s.cont_batching, context_shift=s.context_shift,
        grp_attn_n=s.grp_attn_n, grp_attn_w=s.grp_attn_w,
        # --reranking is --embedding --pooling rank, as in llama-server
        embedding=s.embedding or s.reranking, pooling="rank" if s.reranking else s.pooling,
        chat_template=_chat_template(s), jinja=s.jinja,
        mmproj=mmproj, mmproj_offload=s.mmproj_offload, image_min_tokens=s.image_min_tokens,
        image_max_tokens=s.image_max_tokens, media_max_bytes=s.media_max_bytes,
        system_prompt=text, user_name=user, assistant_name=assistant,
        slot_save_path=s.slot_save_path,
    )


def _speculative(s: ServerSettings) -> SpecConfig | None:
    draft = None
    if s.draft_speculation:
        assert s.model_draft is not None
        draft = DraftModelConfig(model=Path(s.model_draft), n_gpu_layers=s.n_gpu_layers_draft,
                                 threads=s.threads_draft or s.threads,
                                 threads_batch=s.threads_batch_draft or s.threads_draft
                                 or s.threads_batch or s.threads,
                                 p_min=s.spec_draft_p_min)
    if (draft is None and not s.ngram_speculation) or s.spec_draft_n_max == 0:
        return None
    return SpecConfig(n_max=s.spec_draft_n_max, n_min=max(1, s.spec_draft_n_min),
                      ngram=s.ngram_speculation, draft_model=draft)


def check_files(settings: ServerSettings) -> None:
    """Read the files the settings name, as ``engine_config`` will (``ConfigError`` naming the
    flag): the ``llamaserver`` command checks them before it listens."""
    _chat_template(settings)
    if settings.system_prompt_file:
        read_system_prompt_file(Path(settings.system_prompt_file))


def _model_default(value: float) -> float | None:
    return None if value < 0 else value


def _chat_template(s: ServerSettings) -> str | None:
    if s.chat_template_file:
        return _read_text(Path(s.chat_template_file), "--chat-template-file")
    return s.chat_template or None


def _read_text(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror if isinstance(exc, OSError) else exc}"
                          ) from None


def read_system_prompt_file(path: Path) -> tuple[str, str, str]:
    """The seed's -spf file: JSON (``{"system_prompt": {...}}``, its inner object, or a JSON
    string), or plain text.  Text that looks like JSON must be valid JSON of those shapes."""
    raw = _read_text(path, "--system-prompt-file")
    if not raw.lstrip().startswith(("{", "[", '"')):
        return raw, "", ""
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"--system-prompt-file {path}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and "system_prompt" in data:
        data = data["system_prompt"]
    if isinstance(data, str):
        return data, "", ""
    if isinstance(data, dict):
        fields = {key: data.get(key, "") for key in ("prompt", "anti_prompt", "assistant_name")}
        wrong = [key for key, value in fields.items() if not isinstance(value, str)]
        if not wrong and "prompt" in data:
            return fields["prompt"], fields["anti_prompt"], fields["assistant_name"]
        if wrong:
            raise ConfigError(f"--system-prompt-file {path}: {', '.join(wrong)} must be "
                              "strings")
    raise ConfigError(f"--system-prompt-file {path}: expected {{\"prompt\": ..., "
                      "\"anti_prompt\": ..., \"assistant_name\": ...}, optionally inside "
                      "{\"system_prompt\": ...}, or a JSON string")
