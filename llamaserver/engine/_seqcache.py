"""``SequenceCache``: what one slot's sequence holds in the KV cache, and what may be reused.

Only this object changes a sequence's cells (removing, shifting, compressing, saving and
restoring them), so its invariant lives in one place: ``tokens`` are the tokens whose KV
entries the sequence holds, in position order, and ``tokens[:n_valid]`` is exactly what
evaluating them from scratch would give (a context shift makes the rest approximate, so it is
not offered for reuse).  It tells the engine's :class:`~._prefix_cache.PrefixCache` which of
its cells other slots may copy, as they change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._prefix_cache import MIN_GAIN
from ._prompt import common_prefix

if TYPE_CHECKING:
    from llama_ffi import Context

    from ._prefix_cache import PrefixCache

__all__ = ["SequenceCache"]

_log = logging.getLogger("llamaserver.engine")


class SequenceCache:
    __slots__ = ("ctx", "seq", "index", "tokens", "n_valid", "lora", "pos", "ga_i",
                 "shifted", "valid_limit", "t_last_used", "hits", "reused")

    def __init__(self, ctx: Context, seq: int, index: PrefixCache | None) -> None:
        self.ctx = ctx
        self.seq = seq
        self.index = index               # None: nothing is shared (self-extend)
        self.tokens: list[int] = []
        self.n_valid = 0
        self.lora: tuple[float, ...] = ()  # the LoRA scales its KV was computed with
        self.hits = self.reused = 0      # prefixes taken from elsewhere, and their tokens
        self.pos = 0                     # next position (below len(tokens) under self-extend)
        self.ga_i = 0                    # self-extend: start of the window still uncompressed
        self.shifted = False
        self.valid_limit = 0
        self.t_last_used = 0.0

    def __len__(self) -> int:
        return len(self.tokens)

    # ------------------------------------------------------------------ reuse

    def reusable(self, prompt: list[int], lora: tuple[float, ...]) -> int:
        """How much of ``prompt`` this sequence could serve without evaluating it again."""
        if not self.n_valid or self.lora != lora:
            return 0
        cache = self.tokens if self.n_valid == len(self.tokens) else self.tokens[:self.n_valid]
        return common_prefix(cache, prompt)

    def prepare(self, prompt: list[int], *, lora: tuple[float, ...], use_cache: bool,
                n_shared: int, reset: bool, spans: Sequence[tuple[int, int]] = ()) -> int:
        """Make the sequence hold the longest reusable prefix of ``prompt``; returns its length.

        The prefix comes from its own cells, or from wherever the prefix cache holds more of
        it (another sequence, host memory); cells about to be overwritten go to host memory
        first.  Without ``use_cache`` only the first ``n_shared`` tokens (the shared system
        prompt) are reused; ``reset`` reuses nothing (self-extend compresses positions in
        place).  ``spans`` are the prompt's media pieces (start, end): reuse never ends
        inside one (a piece is decoded whole).
        """
        limit = len(prompt) - 1  # the last prompt token must be evaluated to get logits
        if not use_cache:
            limit = min(limit, n_shared)
        for start, end in spans:
            if start < limit < end:
                limit = start
        own = 0 if reset else min(self.reusable(prompt, lora), limit)
        index = self.index
        if index is not None and not reset:
            n, source = index.best(prompt, lora, limit, exclude=self)
            # a copy replaces the sequence's cells: worth it for a real gain, or for all it needs
            if source is not None and n > own and (n - own >= MIN_GAIN or n == limit):
                index.save(self)
                self.clear()
                self.lora = lora
                try:
                    index.transfer(source, self, n)
                except Exception as exc:  # a state that does not load: evaluate instead
                    _log.warning("sequence %d: prefix not restored: %s", self.seq, exc)
                    self.clear()
                return self._keep(len(self.tokens), lora, len(prompt))
        if self.lora != lora or reset:
            if index is not None:
                index.save(self)
            self.clear()
            self.lora = lora
            own = 0
        elif own < self.n_valid and index is not None:
            index.save(self)
        return self._keep(own, lora, len(prompt))

    def _keep(self, n: int, lora: tuple[float, ...], n_prompt: int) -> int:
        """Drop every cell after the first ``n``: the reused prefix of an ``n_prompt``-token
        prompt, evaluated next."""
        if n < len(self.tokens):
            self.ctx.seq_rm(self.seq, n, -1)
            del self.tokens[n:]
        self.lora = lora
        self.n_valid = n
        self.pos = n
        self.ga_i = 0
        self.shifted = False
        self.valid_limit = n_prompt
        self.publish(n)
        return n

    def adopt(self, tokens: tuple[int, ...] | list[int]) -> None:
        """The emptied sequence was filled with ``tokens``' cells from elsewhere."""
        self.tokens.extend(tokens)
        self.n_valid = self.pos = len(self.tokens)

    def publish(self, n: int) -> None:
        """Offer the first ``n`` cells to other slots (they hold exactly ``tokens[:n]``)."""
        if self.index is not None and self.pos == len(self.tokens):
            self.index.publish(self, n)

    # ------------------------------------------------------------------ growth

    def push(self, tok: int) -> int:
        """Record one token about to be decoded; returns its position."""
        pos = self.pos
        self.tokens.append(tok)
        self.pos = pos + 1
        return pos

    def extend(self, chunk: list[int]) -> int:
        """Record a prompt chunk about to be decoded; returns its first position."""
        pos = self.pos
        self.tokens.extend(chunk)
        self.pos = pos + len(chunk)
        return pos

    def rollback(self, n: int) -> None:
        """Forget the last ``n`` cells (a rejected draft's)."""
        if n > 0:
            self.ctx.seq_rm(self.seq, self.pos - n, -1)
            del self.tokens[-n:]
            self.pos -= n

    def extend_media(self, cells: list[int], n_pos: int) -> None:
        """Record a media piece just decoded: its placeholder ids take ``n_pos`` positions."""
        self.tokens.extend(cells)
        self.pos += n_pos

    def shift(self, n_keep: int) -> bool:
        """Context shift: drop half of the tokens after ``n_keep``; False if nothing can go."""
        n_past = len(self.tokens)
        n_discard = (n_past - n_keep) // 2
        if n_discard <= 0:
            return False
        ctx = self.ctx
        ctx.seq_rm(self.seq, n_keep, n_keep + n_discard)
        ctx.seq_add(self.seq, n_keep + n_discard, n_past, -n_discard)
        del self.tokens[n_keep:n_keep + n_discard]
        self.pos -= n_discard
        self.shifted = True
        self.valid_limit = min(self.valid_limit, n_keep)
        if self.index is not None:  # the shifted cells are no prefix of anything any more
            self.index.publish(self, min(self.valid_limit, len(self.tokens)))
        _log.debug("sequence %d: context shift, kept %d, discarded %d", self.seq, n_keep,
                   n_discard)
        return True

    def compress(self, ga_n: int, ga_w: int) -> None:
        """Self-extend: compress older positions group-wise so they stay within the window."""
        ctx, seq = self.ctx, self.seq
        while self.pos >= self.ga_i + ga_w:
            ib = (ga_n * self.ga_i) // ga_w
            bd = (ga_w // ga_n) * (ga_n - 1)
            dd = (ga_w // ga_n) - ib * bd - ga_w
            ctx.seq_add(seq, self.ga_i, self.pos, ib * bd)
            ctx.seq_div(seq, self.ga_i + ib * bd, self.ga_i + ib * bd + ga_w, ga_n)
            ctx.seq_add(seq, self.ga_i + ib * bd + ga_w, self.pos + ib * bd, dd)
            self.pos -= bd
            self.ga_i += ga_w // ga_n

    # ------------------------------------------------------------------ ends

    def end_request(self) -> None:
        """The request is over; the cells stay for the next prompt to reuse."""
        self.n_valid = (min(self.valid_limit, len(self.tokens)) if self.shifted
                        else len(self.tokens))
        self.t_last_used = time.monotonic()
        self.publish(self.n_valid)

    def clear(self) -> None:
        """Remove every cell of the sequence."""
        self.ctx.seq_rm(self.seq, -1, -1)
        self.tokens.clear()
        self.n_valid = 0
        self.pos = 0
        if self.index is not None:
            self.index.withdraw(self)

    def save(self, path: Path) -> tuple[int, int]:
        """Write the cells and their tokens to ``path``: (tokens saved, bytes written)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tokens = list(self.tokens)
        # media cells are saved under their placeholder ids (content hashes): a prompt with the
        # same media reuses them after a restore, in this process or another
        return len(tokens), self.ctx.state_seq_save_file(path, self.seq, tokens,
                                                         placeholders=True)

    def restore(self, path: Path, n_ctx: int) -> int:
        """Replace the cells with those saved in ``path``; returns the tokens restored.

        ``LlamaError`` for a file libllama cannot load, ``ValueError`` when it does not fit
        ``n_ctx``; the sequence is left empty then.
        """
        self.clear()
        try:
            tokens = self.ctx.state_seq_load_file(path, self.seq)
            if len(tokens) >= n_ctx:
                raise ValueError(f"the saved cache ({len(tokens)} tokens) does not fit in a "
                                 f"slot ({n_ctx} tokens)")
        except BaseException:
            self.clear()
            raise
        self.tokens.extend(tokens)
        self.n_valid = self.pos = len(tokens)
        self.publish(len(tokens))
        return len(tokens)
