"""Speculative decoding by prompt lookup: drafts from n-grams of the prompt and the text so far.

A slot that has just sampled token ``s`` looks up the last few tokens of its history (prompt
and output) earlier in that history; what followed there is its draft.  The step then decodes
``s`` and the draft together, and the slot samples every row in turn with its own sampler
chain: while the sampled token equals the next draft token, the following row's logits are
exactly the ones sequential decoding would have produced, so sampling goes on; at the first
difference the sampled token is the next one, and the cells of the rest of the draft are
removed.  This acceptance rule is plain sampling of the target model: the output (greedy or
sampled, with the same seed) is identical with and without speculation, token for token; the
draft only decides how many of those samples one decode can feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_ffi import Context

    from ._metrics import Metrics
    from ._slot import Slot

__all__ = ["SpecConfig", "DraftModelConfig", "NgramDrafter", "draft_room", "verify"]


@dataclass(frozen=True)
class DraftModelConfig:
    """A small model with the target's vocabulary that drafts (``-md``)."""

    model: Path
    n_gpu_layers: int = 0
    threads: int | None = None
    threads_batch: int | None = None
    p_min: float = 0.0       # its draft stops at a token it gives less than this probability


@dataclass(frozen=True)
class SpecConfig:
    n_max: int = 16          # most draft tokens a step may check
    n_min: int = 1           # fewer found than this: no draft
    lookup_max: int = 8      # longest n-gram looked up (the longest match wins)
    lookup_min: int = 2
    ngram: bool = True       # n-gram drafting (for requests the draft model cannot serve)
    draft_model: DraftModelConfig | None = None


class NgramDrafter:
    """The history of one request, indexed by its n-grams (latest occurrence of each)."""

    __slots__ = ("_history", "_index", "_sizes", "_config", "_limit")

    def __init__(self, history: list[int], config: SpecConfig) -> None:
        self._config = config
        self._sizes = tuple(range(config.lookup_max, config.lookup_min - 1, -1))
        self._history: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}
        self._limit = config.n_max   # shrinks while drafts are rejected, grows back when taken
        for tok in history:
            self.append(tok)

    def append(self, tok: int) -> None:
        """One more token of the history (media placeholders included: they never match)."""
        history = self._history
        history.append(tok)
        end = len(history)
        index = self._index
        for n in self._sizes:
            if end > n:  # the n-gram ending before this token points at this token
                index[tuple(history[end - 1 - n:end - 1])] = end - 1

    def draft(self, room: int) -> list[int]:
        """Up to ``room`` tokens that followed the longest earlier match of the tail."""
        room = min(room, self._limit)
        if room < self._config.n_min:
            return []
        history = self._history
        end = len(history)
        for n in self._sizes:
            if end < n:
                continue
            start = self._index.get(tuple(history[end - n:]))
            if start is not None and start < end:
                out = history[start:start + room]
                return out if len(out) >= self._config.n_min and min(out) >= 0 else []
        return []

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        """Adapt the draft length: a rejected draft costs a wider decode for nothing."""
        if n_accepted == n_drafted:
            self._limit = min(self._config.n_max, self._limit * 2)
        else:
            self._limit = max(self._config.n_min, n_accepted + 1)


def draft_room(slot: Slot, budget: int) -> int:
    """How many draft tokens the slot's context, its limit and the batch leave room for."""
    gen = slot.gen
    assert gen is not None
    room = min(budget, slot.n_ctx - len(slot.cache) - 1)
    if gen.n_predict >= 0:
        room = min(room, gen.n_remain - 1)
    return room


def verify(slot: Slot, ctx: Context, i: int, metrics: Metrics) -> int:
    """Sample the rows of a slot's token (row ``i``) and its draft in turn; the cells of the
    draft that the model did not write are removed.  Returns the token to decode next, or -1
    when the generation ended."""
    gen, cache, draft = slot.gen, slot.cache, slot.draft
    assert gen is not None and gen.drafter is not None
    slot.draft = []
    k, n_ctx = len(draft), slot.n_ctx
    taken = 0
    tok = -1
    for r in range(k + 1):
        at_limit = len(cache) - (k - r) + 1 >= n_ctx and not slot.can_shift
        tok = gen.sample(ctx, i + r, at_limit)
        if tok < 0 or r == k or tok != draft[r]:
            break
        taken += 1
    cache.rollback(k - taken)
    gen.draft_n += k
    gen.draft_accepted += taken
    gen.drafter.accepted(k, taken)
    metrics.spec_drafts_total += 1
    metrics.spec_draft_tokens_total += k
    metrics.spec_accepted_tokens_total += taken
    return tok
