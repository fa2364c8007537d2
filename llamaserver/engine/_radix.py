"""``RadixTree``: token sequences indexed for the longest cached prefix of a prompt.

The idea of SGLang's RadixAttention: every cached prefix is a path from the root, edges are
runs of token ids, and each node knows which entries (a slot's sequence, a saved sequence in
host memory) hold the whole path to it.  A prompt walks down as far as it matches; any entry
at the deepest node reached holds that many of its tokens.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["RadixTree"]


class _Node:
    __slots__ = ("edge", "children", "owners", "parent")

    def __init__(self, edge: tuple[int, ...], parent: _Node | None) -> None:
        self.edge = edge                       # the tokens from the parent to this node
        self.children: dict[int, _Node] = {}   # by the first token of their edge
        self.owners: set[Hashable] = set()     # entries holding the whole path to here
        self.parent = parent


class RadixTree:
    def __init__(self) -> None:
        self._root = _Node((), None)
        self._paths: dict[Hashable, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, entry: Hashable) -> bool:
        return entry in self._paths

    def path(self, entry: Hashable) -> tuple[int, ...]:
        return self._paths[entry]

    def insert(self, entry: Hashable, tokens: Sequence[int]) -> None:
        """Index ``entry`` as holding ``tokens`` (replacing what it held before)."""
        self.remove(entry)
        path = tuple(tokens)
        if not path:
            return
        self._paths[entry] = path
        node, at = self._root, 0
        while at < len(path):
            child = node.children.get(path[at])
            if child is None:
                child = _Node(path[at:], node)
                node.children[path[at]] = child
            else:
                common = _common(child.edge, path, at)
                if common < len(child.edge):
                    child = self._split(child, common)
            child.owners.add(entry)
            node, at = child, at + len(child.edge)

    def remove(self, entry: Hashable) -> None:
        path = self._paths.pop(entry, None)
        if path is None:
            return
        node, at = self._root, 0
        trail = []
        while at < len(path):
            node = node.children[path[at]]
            node.owners.discard(entry)
            trail.append(node)
            at += len(node.edge)
        for node in reversed(trail):  # prune what no entry holds any more
            if not node.owners and not node.children and node.parent is not None:
                del node.parent.children[node.edge[0]]

    def longest(self, tokens: Sequence[int]) -> tuple[int, set[Hashable]]:
        """The most tokens of ``tokens`` some entry holds, and those entries."""
        node, at = self._root, 0
        best: tuple[int, set[Hashable]] = (0, set())
        while at < len(tokens):
            child = node.children.get(tokens[at])
            if child is None:
                break
            common = _common(child.edge, tokens, at)
            best = (at + common, child.owners)
            if common < len(child.edge):
                break
            node, at = child, at + common
        return best

    @staticmethod
    def _split(child: _Node, n: int) -> _Node:
        """Cut ``child``'s edge after ``n`` tokens; the new upper node is returned."""
        parent = child.parent
        assert parent is not None
        upper = _Node(child.edge[:n], parent)
        upper.owners = set(child.owners)
        parent.children[upper.edge[0]] = upper
        child.edge = child.edge[n:]
        child.parent = upper
        upper.children[child.edge[0]] = child
        return upper


def _common(edge: tuple[int, ...], tokens: Sequence[int], at: int) -> int:
    n = min(len(edge), len(tokens) - at)
    if tuple(tokens[at:at + n]) == edge[:n]:
        return n
    i = 0
    while i < n and edge[i] == tokens[at + i]:
        i += 1
    return i
