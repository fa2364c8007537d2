"""``SharedPrefix``: the shared system prompt, evaluated once into a sequence of its own.

Every slot's sequence starts with it: a slot built on another version is rebuilt by copying
these cells in (``SequenceCache.prepare``), not by evaluating the prompt again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._errors import InvalidRequest
from .types import SystemPrompt

if TYPE_CHECKING:
    from llama_ffi import Batch, Context

    from ._lora import LoraTurns
    from ._seqcache import SequenceCache

__all__ = ["SharedPrefix"]

_log = logging.getLogger("llamaserver.engine")


class SharedPrefix:
    def __init__(self, ctx: Context, seq: int, n_ctx_slot: int, n_batch: int) -> None:
        self._ctx = ctx
        self.seq = seq
        self._n_ctx_slot = n_ctx_slot
        self._n_batch = n_batch
        self.prompt = SystemPrompt()
        self.version = 0
        self.lora: tuple[float, ...] = ()  # the scales its cells were computed with

    @property
    def n_tokens(self) -> int:
        return len(self.prompt.tokens)

    def check(self, prompt: SystemPrompt) -> None:
        """``InvalidRequest`` unless ``prompt`` leaves room in a slot."""
        if len(prompt.tokens) >= self._n_ctx_slot - 1:
            raise InvalidRequest(
                f"the system prompt ({len(prompt.tokens)} tokens) does not fit in the context "
                f"of a slot ({self._n_ctx_slot} tokens)")

    def apply(self, prompt: SystemPrompt, caches: Iterable[SequenceCache], batch: Batch,
              lora: LoraTurns) -> int:
        """Evaluate ``prompt`` in place of the current one; every slot's cells are dropped.

        Call only while no slot is busy.  Returns the number of tokens evaluated.
        """
        self.check(prompt)
        ctx = self._ctx
        ctx.seq_rm(self.seq, -1, -1)
        for cache in caches:
            cache.clear()
        self.prompt = SystemPrompt()
        self.version += 1
        tokens = list(prompt.tokens)
        if tokens:
            if lora:
                lora.apply(lora.server_scales())
            self.lora = lora.applied
            n_batch = self._n_batch
            for start in range(0, len(tokens), n_batch):
                batch.clear()
                batch.add_tokens(tokens[start:start + n_batch], start, self.seq,
                                 logits_last=False)
                ctx.decode(batch)
        self.prompt = prompt
        _log.info("system prompt set (%d tokens)", len(tokens))
        return len(tokens)

    def copy_into(self, cache: SequenceCache) -> None:
        """Start an emptied sequence with these cells, if they suit its LoRA scales."""
        if self.prompt.tokens and cache.lora == self.lora:
            cache.copy_from(self.seq, self.prompt.tokens)
