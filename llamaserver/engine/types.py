"""The data that crosses between the engine and its callers (no web framework, no pydantic).

A request goes in as a :class:`GenerationRequest`; a :class:`~llamaserver.engine.RequestStream`
yields zero or more :class:`TokenEvent` and then exactly one :class:`FinalEvent` (or raises an
:class:`~llamaserver.engine.EngineError`).  The texts of the ``TokenEvent`` s, joined, equal
``FinalEvent.content``: the engine never sends text it may have to take back (a partial UTF-8
sequence, the beginning of a stop string).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_ffi import SamplerParams

__all__ = ["GenerationRequest", "TokenEvent", "FinalEvent"]


@dataclass
class GenerationRequest:
    """One /completion-style request, already validated for types by the HTTP layer.

    ``prompt`` is a string, a list of token ids, or a mix of both (strings are tokenized in
    place; only a leading string gets BOS).  ``n_predict == -1`` means the server's default
    (``--n-predict``), and when that is -1 too: until end of generation or the slot's context
    is full.  ``system_prompt`` (when not None) replaces the server-wide system prompt that
    every slot starts with; the change waits until the running requests finish.  ``lora``
    gives a scale per loaded adapter id (those left out get 0), as llama-server's ``lora``.
    """

    prompt: str | list[int | str]
    sampling: SamplerParams
    n_predict: int = -1
    n_keep: int = 0
    stop: list[str] = field(default_factory=list)
    cache_prompt: bool = True
    id_slot: int = -1
    n_probs: int = 0
    ignore_eos: bool = False
    add_special: bool = True
    parse_special: bool = True
    system_prompt: str | None = None
    t_max_predict_ms: int = 0
    embedding: bool = False
    lora: dict[int, float] | None = None  # adapter id -> scale; None: the server's current scales


@dataclass(slots=True)
class TokenEvent:
    """Text that is safe to send, with the tokens that produced it.

    ``probs`` (only when the request asked for ``n_probs``) has one entry per token, in the
    seed's ``completion_probabilities`` shape: ``{"content", "probs": [{"tok_str", "prob"}]}``.
    """

    text: str
    tokens: list[int]
    probs: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class FinalEvent:
    """The end of a request: everything a non-streaming /completion answer needs."""

    content: str
    tokens: list[int]
    id_slot: int
    tokens_predicted: int
    tokens_evaluated: int
    tokens_cached: int
    truncated: bool
    stopped_eos: bool
    stopped_limit: bool
    stopped_word: bool
    stopping_word: str
    timings: dict[str, float]
    generation_settings: dict[str, Any]
    prompt: str
    embedding: list[float] | None = None
