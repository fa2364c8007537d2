"""The prefix-aware routing decision, apart from Ray (the router maps ids to replicas).

- a request whose longest known prefix was the whole of an earlier request (the next turn
  of a conversation) goes to the replicas that were sent it, unless they carry ``imbalance``
  more requests than the least loaded replica: then it is treated as new.  For a prompt cut
  into blocks, "the whole" is its complete blocks, so it must reach past them (or be exactly
  them) to count: two prompts that share their blocks and differ in a short tail are new;
- anything else is new work (a new conversation, a shared system prompt or document followed
  by a new question): the least loaded replica, ties broken by who started the fewest new
  prefixes, so that a system prompt every conversation shares spreads over all replicas (each
  computes it once, then holds it like the others).
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Sequence

from ._prefix_index import PrefixIndex
from ._routing_key import RoutingKey

__all__ = ["Decision", "decide"]


@dataclasses.dataclass(frozen=True)
class Decision:
    ranks: list[list[str]]    # replica ids, most preferred rank first
    new: bool                 # new work (counted in ``started`` once routed)


def decide(key: RoutingKey, replicas: Sequence[str], load: Callable[[str], int],
           index: PrefixIndex, started: Counter[str], imbalance: int) -> Decision:
    ordered = sorted(replicas, key=lambda r: (load(r), started[r], random.random()))
    blocks = key.blocks
    if not blocks:
        return Decision([ordered], False)
    match = index.match(blocks, set(replicas))
    if match.holders and match.is_end and (match.depth < len(blocks) or key.whole):
        holders = [r for r in ordered if r in match.holders]
        if load(holders[0]) - load(ordered[0]) <= imbalance:
            return Decision([holders, [r for r in ordered if r not in match.holders]], False)
    return Decision([ordered[:1], ordered[1:]], True)
