"""``SharedPrefix``: the shared system prompt, evaluated once into a sequence of its own.

Every prompt starts with it; its sequence is a pinned entry of the prefix cache, so a slot
copies these cells in (``SequenceCache.prepare``) instead of evaluating the prompt again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._errors import InvalidRequest
from ._seqcache import SequenceCache
from .types import SystemPrompt

if TYPE_CHECKING:
    from llama_ffi import Batch, Context

    from ._lora import LoraTurns
    from ._prefix_cache import PrefixCache

__all__ = ["SharedPrefix"]

_log = logging.getLogger("llamaserver.engine")


class SharedPrefix:
    def __init__(self, ctx: Context, seq: int, n_ctx_slot: int, n_batch: int,
                 index: PrefixCache | None) -> None:
        self._ctx = ctx
        self.seq = seq
        self._n_ctx_slot = n_ctx_slot
        self._n_batch = n_batch
        self.cache = SequenceCache(ctx, seq, index)
        self.prompt = SystemPrompt()

    @property
    def n_tokens(self) -> int:
        return len(self.prompt.tokens)

    def check(self, prompt: SystemPrompt) -> None:
        """``InvalidRequest`` unless ``prompt`` leaves room in a slot."""
        if len(prompt.tokens) >= self._n_ctx_slot - 1:
            raise InvalidRequest(
                f"the system prompt ({len(prompt.tokens)} tokens) does not fit in the context "
                f"of a slot ({self._n_ctx_slot} tokens)")

    def apply(self, prompt: SystemPrompt, batch: Batch, lora: LoraTurns) -> int:
        """Evaluate ``prompt`` in place of the current one.  The slots' cells stay: built on
        the old prompt, they simply stop matching new prompts.

        Call only while no slot is busy.  Returns the number of tokens evaluated.
        """
        self.check(prompt)
        ctx = self._ctx
        cache = self.cache
        cache.clear()
        self.prompt = SystemPrompt()
        tokens = list(prompt.tokens)
        if tokens:
            if lora:
                lora.apply(lora.server_scales())
            cache.lora = lora.applied
            n_batch = self._n_batch
            for start in range(0, len(tokens), n_batch):
                batch.clear()
                batch.add_tokens(tokens[start:start + n_batch], start, self.seq,
                                 logits_last=False)
                ctx.decode(batch)
            cache.adopt(tokens)
            cache.publish(len(tokens))
        self.prompt = prompt
        _log.info("system prompt set (%d tokens)", len(tokens))
        return len(tokens)
