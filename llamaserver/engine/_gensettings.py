"""``generation_settings`` in the seed's shape (the /completion answer, /slots, /props)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["generation_settings"]

_DEFAULT_SAMPLERS = ["dry", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]


def _logit_bias(bias: Any) -> list[list[Any]]:
    # The seed writes a banned token as [id, false]; JSON has no -inf.
    items = bias.items() if isinstance(bias, dict) else (bias or [])
    out: list[list[Any]] = []
    for tok, value in items:
        if isinstance(value, float) and math.isinf(value) and value < 0:
            out.append([tok, False])
        else:
            out.append([tok, value])
    return out


def generation_settings(sampling: Any, *, model: str, n_ctx: int, n_predict: int,
                        stop: list[str], n_keep: int, n_probs: int, ignore_eos: bool,
                        cache_prompt: bool = True, id_slot: int = -1,
                        t_max_predict_ms: int = 0) -> dict[str, Any]:
    g = getattr
    penalty_prompt = g(sampling, "penalty_prompt_tokens", None)
    grammar = g(sampling, "grammar", None)
    return {
        "n_ctx": n_ctx,
        "n_predict": n_predict,
        "model": model,
        "seed": g(sampling, "seed", 0xFFFFFFFF),
        "temperature": g(sampling, "temperature", 0.8),
        "dynatemp_range": g(sampling, "dynatemp_range", 0.0),
        "dynatemp_exponent": g(sampling, "dynatemp_exponent", 1.0),
        "top_k": g(sampling, "top_k", 40),
        "top_p": g(sampling, "top_p", 0.95),
        "min_p": g(sampling, "min_p", 0.05),
        "tfs_z": g(sampling, "tfs_z", 1.0),
        "typical_p": g(sampling, "typical_p", 1.0),
        "xtc_probability": g(sampling, "xtc_probability", 0.0),
        "xtc_threshold": g(sampling, "xtc_threshold", 0.1),
        "top_n_sigma": g(sampling, "top_n_sigma", -1.0),
        "repeat_last_n": g(sampling, "repeat_last_n", 64),
        "repeat_penalty": g(sampling, "repeat_penalty", 1.0),
        "presence_penalty": g(sampling, "presence_penalty", 0.0),
        "frequency_penalty": g(sampling, "frequency_penalty", 0.0),
        "penalty_prompt_tokens": list(penalty_prompt or []),
        "use_penalty_prompt_tokens": penalty_prompt is not None,
        "dry_multiplier": g(sampling, "dry_multiplier", 0.0),
        "dry_base": g(sampling, "dry_base", 1.75),
        "dry_allowed_length": g(sampling, "dry_allowed_length", 2),
        "dry_penalty_last_n": g(sampling, "dry_penalty_last_n", -1),
        "dry_sequence_breakers": list(g(sampling, "dry_sequence_breakers", ()) or ()),
        "mirostat": g(sampling, "mirostat", 0),
        "mirostat_tau": g(sampling, "mirostat_tau", 5.0),
        "mirostat_eta": g(sampling, "mirostat_eta", 0.1),
        "penalize_nl": g(sampling, "penalize_nl", False),
        "stop": list(stop),
        "n_keep": n_keep,
        "n_discard": 0,
        "ignore_eos": ignore_eos,
        "stream": False,
        "logit_bias": _logit_bias(g(sampling, "logit_bias", None)),
        "n_probs": n_probs,
        "min_keep": g(sampling, "min_keep", 0),
        "grammar": grammar or "",
        "samplers": list(g(sampling, "samplers", None) or _DEFAULT_SAMPLERS),
        "cache_prompt": cache_prompt,
        "id_slot": id_slot,
        "t_max_predict_ms": t_max_predict_ms,
    }
