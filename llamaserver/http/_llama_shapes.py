"""llama.cpp's own answer shapes, from the engine's typed output.

- ``generation_settings``: the seed's object, made from the resolved request itself, so no
  default is written down twice.
- ``completion_probabilities``: one entry per token in a superset of both contracts: the
  seed's ``content``/``probs[{tok_str, prob}]`` and today's ``id``/``token``/``logprob``/
  ``bytes``/``top_logprobs[{id, token, logprob, bytes}]``.  Entries carry token ids, so two
  candidates with the same text keep their own probabilities.
- ``timings``: today's fields (``cache_n``, ``prompt_n``, ...) with the derived rates.
- ``/slots`` entries.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from llama_ffi import SamplerParams

if TYPE_CHECKING:
    from llama_ffi import Vocab

    from ..engine import GenerationRequest, PromptProgress, SlotInfo, Timings, TokenProbs

# SamplerParams fields shown under another name, or not at all
_RENAMED = {"penalty_prompt_tokens": None, "logit_bias": None}


def generation_settings(req: GenerationRequest, lora: tuple[float, ...], *, n_ctx: int,
                        model: str, stream: bool = False,
                        speculative: str = "none") -> dict[str, Any]:
    """The seed's ``generation_settings`` of ``req``, run with adapter scales ``lora``."""
    sampling: SamplerParams = req.sampling
    out: dict[str, Any] = {"n_ctx": n_ctx, "n_predict": req.n_predict, "model": model}
    for f in dataclasses.fields(SamplerParams):
        if f.name not in _RENAMED:
            value = getattr(sampling, f.name)
            out[f.name] = list(value) if isinstance(value, (list, tuple)) else value
    out["grammar"] = sampling.grammar or ""
    out["penalty_prompt_tokens"] = list(sampling.penalty_prompt_tokens or [])
    out["use_penalty_prompt_tokens"] = sampling.penalty_prompt_tokens is not None
    # The seed writes a banned token as [id, false]; JSON has no -inf.
    out["logit_bias"] = [[tok, False if math.isinf(bias) and bias < 0 else bias]
                         for tok, bias in sampling.logit_bias.items()]
    out.update({
        "stop": list(req.stop), "n_keep": req.n_keep, "n_discard": 0, "stream": stream,
        "cache_prompt": req.cache_prompt, "id_slot": req.id_slot,
        "t_max_predict_ms": req.t_max_predict_ms,
        "lora": [{"id": i, "scale": v} for i, v in enumerate(lora) if v],
        # today's llama-server names beside the seed's
        "max_tokens": req.n_predict, "timings_per_token": req.timings_per_token,
        "post_sampling_probs": False, "backend_sampling": False,
        "speculative.types": speculative if req.speculative else "none",
        "grammar_lazy": False, "grammar_triggers": [], "preserved_tokens": [],
        "chat_format": "Content-only", "reasoning_format": "none",
        "reasoning_in_content": False, "generation_prompt": "",
    })
    return out


def default_slot(settings: dict[str, Any], n_ctx: int) -> dict[str, Any]:
    """/props' default_generation_settings: the seed's flat settings, and today's idle slot
    shape (``params``, ``next_token``, ...) around the same values."""
    return {**settings, "id": 0, "id_task": -1, "n_ctx": n_ctx, "speculative": False,
            "is_processing": False, "params": settings, "prompt": "",
            "next_token": {"has_next_token": True, "has_new_line": False, "n_remain": -1,
                           "n_decoded": 0, "stopping_word": ""}}


class Pieces:
    """Token texts for answers, cached per server (a vocabulary's pieces never change)."""

    def __init__(self, vocab: Vocab) -> None:
        self._vocab = vocab
        self._text: dict[int, str] = {}

    def text(self, tok: int) -> str:
        text = self._text.get(tok)
        if text is None:
            text = self._vocab.token_to_piece(tok).decode("utf-8", "replace")
            self._text[tok] = text
        return text

    def bytes(self, tok: int) -> list[int]:
        return list(self._vocab.token_to_piece(tok))


def logprob(prob: float) -> float:
    """log(p); -inf (sent as null) for p = 0."""
    return math.log(prob) if prob > 0 else -math.inf


def probability_entry(pieces: Pieces, probs: TokenProbs) -> dict[str, Any]:
    """One ``completion_probabilities`` entry (the seed's and today's fields together)."""
    text = pieces.text
    piece = text(probs.token)
    return {
        "id": probs.token, "token": piece, "logprob": logprob(probs.prob),
        "bytes": pieces.bytes(probs.token),
        "top_logprobs": [{"id": tok, "token": text(tok), "logprob": logprob(p),
                          "bytes": pieces.bytes(tok)} for tok, p in probs.top],
        "content": piece,
        "probs": [{"id": tok, "tok_str": text(tok), "prob": p} for tok, p in probs.top],
    }


def timings(t: Timings) -> dict[str, Any]:
    drafts = {"draft_n": t.draft_n, "draft_n_accepted": t.draft_n_accepted} if t.draft_n else {}
    return {
        **drafts,
        "cache_n": t.cache_n,
        "prompt_n": t.prompt_n,
        "prompt_ms": t.prompt_ms,
        "prompt_per_token_ms": t.prompt_ms / t.prompt_n if t.prompt_n else 0.0,
        "prompt_per_second": 1000.0 * t.prompt_n / t.prompt_ms if t.prompt_ms > 0 else 0.0,
        "predicted_n": t.predicted_n,
        "predicted_ms": t.predicted_ms,
        "predicted_per_token_ms": t.predicted_ms / t.predicted_n if t.predicted_n else 0.0,
        "predicted_per_second": (1000.0 * t.predicted_n / t.predicted_ms
                                 if t.predicted_ms > 0 else 0.0),
    }


def progress(p: PromptProgress) -> dict[str, Any]:
    """``prompt_progress`` (``return_progress``): the share done is processed/total."""
    return {"total": p.total, "cache": p.cache, "processed": p.processed,
            "time_ms": int(p.time_ms)}


def slot_entry(info: SlotInfo, settings: dict[str, Any]) -> dict[str, Any]:
    """The seed's /slots entry: the generation settings, state and next_token."""
    return {
        **settings,
        "id": info.id,
        "id_task": info.id_task,
        "task_id": info.id_task,
        "n_ctx": info.n_ctx,
        "state": 1 if info.is_processing else 0,
        "is_processing": info.is_processing,
        "prompt": info.request.prompt_text if info.request is not None else "",
        "n_cached_tokens": info.n_cached_tokens,
        "speculative": False,
        "params": settings,
        "n_prompt_tokens": info.n_prompt_tokens,
        "n_prompt_tokens_processed": info.n_prompt_tokens_processed,
        "n_prompt_tokens_cache": info.n_prompt_tokens_cache,
        "prompt_cache": {"hits": info.prompt_cache_hits,
                         "tokens_reused": info.prompt_cache_tokens_reused},
        "next_token": {
            "has_next_token": info.is_processing,
            "has_new_line": False,
            "n_remain": info.n_remain,
            "n_decoded": info.n_decoded,
            "stopped_eos": info.stopped_eos,
            "stopped_limit": info.stopped_limit,
            "stopped_word": info.stopped_word,
            "stopping_word": info.stopping_word,
        },
    }
