"""``PrefixCache``: every cached prompt prefix, in the slots' sequences and in host memory.

A radix tree over token ids per set of LoRA scales (a prefix computed under other scales holds
other keys and values) knows which entry holds how much of a prompt: a slot's sequence (the
shared system prompt's among them, pinned), or a sequence's state saved to host memory when a
slot was about to be overwritten.  A slot about to evaluate a prompt takes the longest prefix
wherever it is: its own cells, another sequence's (``seq_cp``, or through host memory when a
whole-stream copy would move far more than the cells), or host memory (``state_seq_set``); only
the rest is evaluated.  Host memory is bounded
(``--cache-ram``) and evicts the least recently used.  Everything here runs on the worker
thread.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._radix import RadixTree

if TYPE_CHECKING:
    from llama_ffi import Context

    from ._seqcache import SequenceCache

__all__ = ["PrefixCache", "HostEntry"]

_log = logging.getLogger("llamaserver.engine")

Scales = tuple[float, ...]

MIN_GAIN = 16      # tokens a copy must save over a slot's own cells to be worth it
MIN_SAVE = 64      # tokens a sequence about to be overwritten must hold to be kept in RAM


@dataclass(eq=False)
class HostEntry:
    tokens: tuple[int, ...]
    state: bytes
    lora: Scales
    last_used: float

    @property
    def nbytes(self) -> int:
        return len(self.state)


class PrefixCache:
    def __init__(self, ctx: Context, ram_bytes: int) -> None:
        self._ctx = ctx
        self._trees: dict[Scales, RadixTree] = {}
        self._host: OrderedDict[int, HostEntry] = OrderedDict()   # least recently used first
        self._host_keys = itertools.count()
        self._ram = ram_bytes            # 0: no host memory; < 0: no bound
        self.host_bytes = 0
        # sequences given another stream's cells by seq_cp: libllama moves the buffer at the
        # next decode, so until then their cells must not be read (state_seq_get)
        self.unsettled: set[int] = set()
        self.hits = 0                    # prompts that took a prefix from elsewhere
        self.tokens_reused = 0           # ... and how many tokens that saved

    def _tree(self, lora: Scales) -> RadixTree:
        tree = self._trees.get(lora)
        if tree is None:
            tree = self._trees[lora] = RadixTree()
        return tree

    @property
    def host_entries(self) -> int:
        return len(self._host)

    # ------------------------------------------------------------------ sequences

    def publish(self, cache: SequenceCache, n: int) -> None:
        """``cache``'s sequence holds exactly ``tokens[:n]`` from now on (until told again)."""
        self.withdraw(cache)
        if n > 0:
            self._tree(cache.lora).insert(cache, cache.tokens[:n])

    def withdraw(self, cache: SequenceCache) -> None:
        for tree in self._trees.values():
            tree.remove(cache)

    # ------------------------------------------------------------------ lookups

    def best(self, prompt: list[int], lora: Scales, limit: int,
             exclude: SequenceCache) -> tuple[int, SequenceCache | int | None]:
        """The most of ``prompt[:limit]`` held anywhere but ``exclude``, and where: a sequence
        or a host entry's key."""
        tree = self._trees.get(lora)
        if tree is None:
            return 0, None
        n, owners = tree.longest(prompt[:limit])
        source: SequenceCache | int | None = None
        for owner in owners:
            if owner is exclude:
                continue
            if not isinstance(owner, int):
                return n, owner  # a live sequence: a cell copy, the cheapest
            source = owner
        return (n, source) if source is not None else (0, None)

    def transfer(self, source: SequenceCache | int, target: SequenceCache, n: int) -> None:
        """Fill the emptied ``target`` with ``n`` cells of ``source``."""
        ctx = self._ctx
        if isinstance(source, int):
            entry = self._host[source]
            self._host.move_to_end(source)
            entry.last_used = time.monotonic()
            ctx.state_seq_set(target.seq, entry.state)
            if n < len(entry.tokens):
                ctx.seq_rm(target.seq, n, -1)
            tokens = entry.tokens[:n]
        elif (ctx.kv_unified or 2 * len(source.tokens) >= ctx.n_ctx_seq
              or source.seq in self.unsettled):
            # Within one KV stream this only tags cells.  Across streams libllama copies the
            # whole stream buffer (at the next decode), whatever the sequence holds: worth it
            # when the sequence fills half of it or more.  Either way: all, then trim.
            ctx.seq_cp(source.seq, target.seq, -1, -1)
            ctx.seq_rm(target.seq, n, -1)
            if not ctx.kv_unified:
                self.unsettled.add(target.seq)
            tokens = tuple(source.tokens[:n])
        else:  # a few cells of a large stream: copy just them, through host memory
            ctx.state_seq_set(target.seq, ctx.state_seq_get(source.seq))
            ctx.seq_rm(target.seq, n, -1)
            tokens = tuple(source.tokens[:n])
        target.adopt(tokens)
        self.hits += 1
        self.tokens_reused += n
        target.hits += 1
        target.reused += n

    def settled(self) -> None:
        """The context decoded: every pending stream copy has been made."""
        self.unsettled.clear()

    # ------------------------------------------------------------------ host memory

    def save(self, cache: SequenceCache) -> None:
        """Keep ``cache``'s valid cells in host memory before they are overwritten, unless they
        are few, held elsewhere already, or over the memory bound."""
        n = cache.n_valid
        if (self._ram == 0 or n < MIN_SAVE or cache.pos != len(cache.tokens)
                or cache.seq in self.unsettled):
            return
        tree = self._tree(cache.lora)
        held, owners = tree.longest(cache.tokens[:n])
        if held >= n and any(owner is not cache for owner in owners):
            return
        ctx = self._ctx
        if n < len(cache.tokens):  # the shifted tail is about to go anyway
            ctx.seq_rm(cache.seq, n, -1)
            del cache.tokens[n:]
            cache.pos = n
        state = ctx.state_seq_get(cache.seq)
        if 0 < self._ram < len(state):
            return
        key = next(self._host_keys)
        entry = HostEntry(tuple(cache.tokens[:n]), state, cache.lora, time.monotonic())
        self._host[key] = entry
        self.host_bytes += entry.nbytes
        tree.insert(key, entry.tokens)
        while 0 < self._ram < self.host_bytes:
            old_key, old = self._host.popitem(last=False)
            self._tree(old.lora).remove(old_key)
            self.host_bytes -= old.nbytes
        _log.debug("prompt cache: kept %d tokens in RAM (%d bytes, %d entries)", n,
                   entry.nbytes, len(self._host))
