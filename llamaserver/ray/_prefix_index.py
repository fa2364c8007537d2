"""Which replica was last sent which prompt prefix: the router's guess of the replicas' caches.

Each entry is a prefix hash (see ``_routing_key``) with the replicas that were sent a request
containing that prefix, and whether the prefix was the whole of such a request (an *end*).
A request whose longest known prefix is an end continues that earlier request (the next turn
of a conversation): its replica holds the whole history.  A request that only shares the
inside of earlier ones (a common system prompt, a shared document) starts something new.

Bounded: the least recently used hashes go first.  Only the router's own thread touches it.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Collection, Sequence

__all__ = ["Match", "PrefixIndex"]


@dataclasses.dataclass(frozen=True)
class Match:
    depth: int                     # how many leading blocks some replica was sent
    holders: frozenset[str]        # the replicas (among those asked about) that were sent them
    is_end: bool                   # whether those blocks were all of an earlier request


@dataclasses.dataclass
class _Entry:
    holders: set[str]
    ends: set[str]


class PrefixIndex:
    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, blocks: Sequence[bytes], replicas: Collection[str]) -> Match:
        """The deepest prefix of ``blocks`` that one of ``replicas`` was sent."""
        for depth in range(len(blocks), 0, -1):
            entry = self._entries.get(blocks[depth - 1])
            if entry is None:
                continue
            holders = frozenset(r for r in entry.holders if r in replicas)
            if holders:
                return Match(depth, holders, bool(entry.ends & holders))
        return Match(0, frozenset(), False)

    def record(self, blocks: Sequence[bytes], replica: str) -> None:
        """``replica`` was sent a request made of ``blocks``."""
        entries = self._entries
        for i, block in enumerate(blocks):
            entry = entries.get(block)
            if entry is None:
                entry = entries[block] = _Entry(set(), set())
            else:
                entries.move_to_end(block)
            entry.holders.add(replica)
            if i == len(blocks) - 1:
                entry.ends.add(replica)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def forget(self, replicas: Collection[str]) -> None:
        """Replicas that are gone: their caches went with them."""
        gone = set(replicas)
        for block in list(self._entries):
            entry = self._entries[block]
            entry.holders -= gone
            entry.ends -= gone
            if not entry.holders:
                del self._entries[block]
