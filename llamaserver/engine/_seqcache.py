"""``SequenceCache``: what one slot's sequence holds in the KV cache, and what may be reused.

Only this object changes a sequence's cells (removing, shifting, compressing, saving and
restoring them), so its invariant lives in one place: ``tokens`` are the tokens whose KV
entries the sequence holds, in position order, and ``tokens[:n_valid]`` is exactly what
evaluating them from scratch would give (a context shift makes the rest approximate, so it is
not offered for reuse).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._prompt import common_prefix

if TYPE_CHECKING:
    from llama_ffi import Context

    from ._shared import SharedPrefix

__all__ = ["SequenceCache"]

_log = logging.getLogger("llamaserver.engine")


class SequenceCache:
    __slots__ = ("ctx", "seq", "tokens", "n_valid", "sys_version", "lora", "pos", "ga_i",
                 "shifted", "valid_limit", "t_last_used")

    def __init__(self, ctx: Context, seq: int) -> None:
        self.ctx = ctx
        self.seq = seq
        self.tokens: list[int] = []
        self.n_valid = 0
        self.sys_version = -1            # the shared prefix it was built on
        self.lora: tuple[float, ...] = ()  # the LoRA scales its KV was computed with
        self.pos = 0                     # next position (below len(tokens) under self-extend)
        self.ga_i = 0                    # self-extend: start of the window still uncompressed
        self.shifted = False
        self.valid_limit = 0
        self.t_last_used = 0.0

    def __len__(self) -> int:
        return len(self.tokens)

    # ------------------------------------------------------------------ reuse

    def reusable(self, prompt: list[int], sys_version: int, lora: tuple[float, ...]) -> int:
        """How much of ``prompt`` this sequence could serve without evaluating it again."""
        if not self.n_valid or self.sys_version != sys_version or self.lora != lora:
            return 0
        cache = self.tokens if self.n_valid == len(self.tokens) else self.tokens[:self.n_valid]
        return common_prefix(cache, prompt)

    def prepare(self, prompt: list[int], *, shared: SharedPrefix, lora: tuple[float, ...],
                use_cache: bool, reset: bool, spans: Sequence[tuple[int, int]] = ()) -> int:
        """Make the sequence hold the longest reusable prefix of ``prompt``; returns its length.

        Every prompt starts with the ``shared`` prefix (the system prompt); a sequence built on
        another one, or with other LoRA scales, is rebuilt from it.  ``reset`` forces a rebuild
        (self-extend compresses positions in place); without ``use_cache`` only the shared
        prefix is reused.  ``spans`` are the prompt's media pieces (start, end): reuse never
        ends inside one (a piece is decoded whole).
        """
        if reset or self.sys_version != shared.version or self.lora != lora:
            self.clear()
            self.lora = lora
            shared.copy_into(self)
            self.sys_version = shared.version
        limit = self.n_valid if use_cache else min(self.n_valid, shared.n_tokens)
        cache = self.tokens if limit == len(self.tokens) else self.tokens[:limit]
        n_reuse = common_prefix(cache, prompt)
        if n_reuse >= len(prompt):  # the last prompt token must be evaluated to get logits
            n_reuse = len(prompt) - 1
        for start, end in spans:
            if start < n_reuse < end:
                n_reuse = start
        if n_reuse < len(self.tokens):
            self.ctx.seq_rm(self.seq, n_reuse, -1)
            del self.tokens[n_reuse:]
        self.n_valid = n_reuse
        self.pos = n_reuse
        self.ga_i = 0
        self.shifted = False
        self.valid_limit = len(prompt)
        return n_reuse

    def copy_from(self, src_seq: int, tokens: tuple[int, ...] | list[int]) -> None:
        """Fill the (empty) sequence with the cells of ``src_seq``, which holds ``tokens``."""
        self.ctx.seq_cp(src_seq, self.seq, -1, -1)  # separate KV streams: the cells are copied
        self.tokens.extend(tokens)
        self.n_valid = self.pos = len(self.tokens)

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

    def clear(self) -> None:
        """Remove every cell of the sequence."""
        self.ctx.seq_rm(self.seq, -1, -1)
        self.tokens.clear()
        self.n_valid = 0
        self.pos = 0
        self.sys_version = -1

    def save(self, path: Path) -> tuple[int, int]:
        """Write the cells and their tokens to ``path``: (tokens saved, bytes written)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tokens = list(self.tokens)
        return len(tokens), self.ctx.state_seq_save_file(path, self.seq, tokens)

    def restore(self, path: Path, n_ctx: int, sys_version: int) -> int:
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
        self.sys_version = sys_version
        return len(tokens)
