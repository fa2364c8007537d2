"""The data that crosses between the engine and its callers (no web framework, no pydantic).

A :class:`GenerationRequest` goes in fully resolved: tokens, sampler parameters, limits.  The
engine checks only what only it knows (slot ids, whether the prompt fits, the system prompt).
A :class:`~llamaserver.engine.RequestStream` yields zero or more :class:`TokenEvent` and then
exactly one :class:`FinalEvent` (or raises an :class:`~llamaserver.engine.EngineError`).  The
texts of the ``TokenEvent`` s, joined, equal ``FinalEvent.content``: the engine never sends
text it may have to take back (a partial UTF-8 sequence, the beginning of a stop string).
Nothing here is in any response's shape: each endpoint formats its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llama_ffi import SamplerParams, TokenProbs

if TYPE_CHECKING:
    from llama_ffi import Vocab

__all__ = ["SystemPrompt", "MediaPiece", "TokenBudget", "GenerationRequest", "TokenProbs", "TokenEvent", "PromptProgress",
           "Timings",
           "FinalEvent", "Embedding", "SlotInfo", "LoraInfo", "SlotSaved", "SlotRestored",
           "SlotErased"]


@dataclass(frozen=True, slots=True)
class SystemPrompt:
    """The prompt every slot starts with (the seed's shared system prompt), tokenized.

    ``user_name`` and ``assistant_name`` are only reported back (the seed's ``/props``).
    """

    text: str = ""
    tokens: tuple[int, ...] = ()
    user_name: str = ""
    assistant_name: str = ""

    @classmethod
    def from_text(cls, vocab: Vocab, text: str, user_name: str = "",
                  assistant_name: str = "") -> SystemPrompt:
        """Tokenized as the seed did: BOS first, special tokens parsed."""
        tokens = vocab.tokenize(text, add_special=True, parse_special=True) if text else []
        return cls(text, tuple(tokens), user_name, assistant_name)


@dataclass(frozen=True, slots=True)
class MediaPiece:
    """An image or audio clip inside a prompt, encoded: ``n_tokens`` cells of the request's
    ``tokens`` from ``offset`` hold its placeholder ids (the same for the same content, so the
    prompt cache finds it again), and it takes ``n_pos`` positions."""

    offset: int
    n_tokens: int
    n_pos: int
    id: str                 # the content hash
    chunk: Any              # llama_ffi.Chunk, alive while the request's media_owner is open
    embeddings: Any         # llama_ffi.MediaEmbeddings


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """At most ``n`` generated tokens between ``start`` (None: from the first token) and
    ``end``; past that the engine writes ``forced`` (which should end with ``end``)."""

    end: str
    n: int
    forced: tuple[int, ...]
    start: str | None = None


@dataclass(slots=True)
class GenerationRequest:
    """One generation, resolved: nothing in it needs the request's JSON any more.

    ``tokens`` are the request's own prompt (valid ids; the system prompt is not in them).
    ``bos_added`` says ``tokens[0]`` is a BOS the tokenizer added: it is dropped when a system
    prompt (which starts with its own BOS) comes first.  ``n_predict`` is the final limit (-1:
    until end of generation or the slot's context is full).  ``n_keep`` counts prompt tokens
    kept by a context shift (-1: all).  ``system_prompt`` (when not None) replaces the shared
    one; the change waits until the running requests finish.  ``lora`` gives a scale per
    adapter id (others get 0; None: the server-wide scales).  With ``truncate`` a prompt too
    long for a slot is cut as the seed did; without, it is a ``PromptTooLong`` error.
    """

    tokens: list[int]
    sampling: SamplerParams = field(default_factory=SamplerParams)
    n_predict: int = -1
    n_keep: int = 0
    stop: tuple[str, ...] = ()
    cache_prompt: bool = True
    id_slot: int = -1
    bos_added: bool = False
    system_prompt: SystemPrompt | None = None
    t_max_predict_ms: int = 0
    lora: Mapping[int, float] | None = None
    truncate: bool = True
    prompt_text: str = ""
    budget: TokenBudget | None = None  # e.g. a thinking budget
    media: tuple[MediaPiece, ...] = ()
    media_owner: Any = None  # llama_ffi.Chunks behind ``media``: closed when the request ends
    speculative: bool = True          # may use the server's speculative decoding
    timings_per_token: bool = False   # each TokenEvent carries the timings so far
    return_progress: bool = False     # PromptProgress events while the prompt is evaluated


@dataclass(slots=True)
class TokenEvent:
    """Text that is safe to send, with the tokens that produced it.

    ``probs`` (only when the request's sampler asks for ``n_probs``) has one entry per token:
    the token id, its probability, and the top candidates as (id, probability) pairs.
    """

    text: str
    tokens: list[int]
    probs: list[TokenProbs] | None = None
    timings: Timings | None = None    # with ``timings_per_token``


@dataclass(frozen=True, slots=True)
class PromptProgress:
    """How far the prompt's evaluation is (``return_progress``): ``cache`` tokens were reused,
    ``processed`` (cache included) of ``total`` are in the slot, ``time_ms`` since it began."""

    total: int
    cache: int
    processed: int
    time_ms: float


@dataclass(frozen=True, slots=True)
class Timings:
    """Raw counts and durations of one request; rates are derived where they are shown."""

    prompt_n: int = 0        # prompt tokens evaluated
    prompt_ms: float = 0.0
    predicted_n: int = 0     # tokens generated
    predicted_ms: float = 0.0
    cache_n: int = 0         # prompt tokens reused from the slot's cache
    draft_n: int = 0         # speculative decoding: tokens drafted, and accepted
    draft_n_accepted: int = 0


@dataclass(slots=True)
class FinalEvent:
    """The end of a request: its whole text, counts, why it stopped, and timings.

    ``tokens_evaluated`` counts the request's own prompt tokens (after truncation);
    ``tokens_cached`` the prompt tokens found in the slot (``n_past`` after reuse, the shared
    system prompt included).  ``stopped_shutdown``: the engine stopped before the request
    ended (``Engine.stop``); the counts and text are what it had.
    """

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
    timings: Timings
    stopped_shutdown: bool = False


@dataclass(frozen=True, slots=True)
class Embedding:
    """One input's embedding: a pooled vector, or one vector per token (pooling "none")."""

    vectors: list[list[float]]
    n_tokens: int
    pooled: bool


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """A slot as it is now; ``request`` is the one it serves (None when idle)."""

    id: int
    is_processing: bool
    id_task: int
    request: GenerationRequest | None
    lora: tuple[float, ...]   # the adapter scales it runs with
    n_ctx: int
    n_cached_tokens: int      # cells the slot's sequence holds
    n_prompt_tokens: int      # the request's whole prompt (shared prefix included)
    n_prompt_tokens_cache: int  # ... of which were reused
    n_prompt_tokens_processed: int  # ... and evaluated so far
    n_decoded: int
    n_remain: int
    stopped_eos: bool
    stopped_limit: bool
    stopped_word: bool
    stopping_word: str
    prompt_cache_hits: int = 0        # prompts that took a prefix from elsewhere into it
    prompt_cache_tokens_reused: int = 0


@dataclass(frozen=True, slots=True)
class LoraInfo:
    """A loaded LoRA adapter and its server-wide scale."""

    id: int
    path: str
    scale: float


@dataclass(frozen=True, slots=True)
class SlotSaved:
    id_slot: int
    filename: str
    n_saved: int
    n_written: int
    save_ms: float


@dataclass(frozen=True, slots=True)
class SlotRestored:
    id_slot: int
    filename: str
    n_restored: int
    n_read: int
    restore_ms: float


@dataclass(frozen=True, slots=True)
class SlotErased:
    id_slot: int
    n_erased: int
