"""The budget of one chat-template render, and the size model it is checked with.

A template is code, and Jinja gives it three ways to make Python work without
bound: loops (counted here, every iteration of every ``{% for %}``), big
integers (``10 ** 10 ** 10``), and C-level operations that allocate from a
number or walk a structure (``'a'|center(10**9)``, ``'x' * 10**9``, ``str()`` of
a list that holds the same list a million times).  The sandbox predicts the size
of each such operation from its arguments and refuses it *before* it runs; what
it cannot predict is admitted afterwards (``RenderBudget.admit``), so no value a
template holds is ever larger than ``max_value_size``.  That invariant is what
keeps Python's own C walkers (``repr``, ``==``, ``hash``, ``json.dumps``) short:
they never meet a structure that is bigger, or deeper, than the budget allows.

Sizes are rough byte counts: a string counts its length, an integer its
bytes, a list/tuple/set 8 per slot and a dict 16 per entry plus everything
they hold, counted once per reference (``[x] * 1000`` holds ``x`` 1000 times
as far as ``repr`` is concerned, whatever the memory says).
"""

from __future__ import annotations

import collections.abc
import math
from dataclasses import dataclass
from typing import Any, Iterable, NoReturn

from llama_ffi._errors import TemplateError

SLOT = 8  # a pointer: what a container pays per element
MAX_DEPTH = 100  # nesting of any value a template builds (C walkers recurse on it)
_LOG10_2 = math.log10(2)
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_SIZED_BY_LEN = (str, bytes, bytearray)
_FLAT = (float, bool, type(None), complex, range)


@dataclass(frozen=True)
class TemplateLimits:
    """What one render may spend.  ``0`` for the two size limits means "derived from the output limit"."""

    timeout: float = 5.0  # wall clock; past it the render is abandoned
    max_output_chars: int = 8_000_000  # the rendered prompt
    max_loop_iterations: int = 1_000_000  # every iteration of every {% for %}, nested or not
    max_int_digits: int = 4096  # any integer a template computes
    max_value_size: int = 0  # any one value or operation (default: max_output_chars)
    max_total_size: int = 0  # everything built during the render, added up (default: 8 x that)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError("the chat-template timeout must be positive")
        for name in ("max_output_chars", "max_loop_iterations", "max_int_digits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer")
        if self.max_value_size <= 0:
            object.__setattr__(self, "max_value_size", self.max_output_chars)
        if self.max_total_size <= 0:
            object.__setattr__(self, "max_total_size", 8 * self.max_value_size)

    @property
    def max_int_bits(self) -> int:
        return int(self.max_int_digits / _LOG10_2) + 1


def _children(value: Any) -> Iterable[Any] | None:
    """What ``repr``/``==``/``hash`` would walk inside ``value``; ``None`` for leaves."""
    kind = type(value)
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return value  # type: ignore[no-any-return]
    if kind is dict:
        return _flat_items(value)
    if isinstance(value, _SIZED_BY_LEN) or isinstance(value, _FLAT) or isinstance(value, int):
        return None
    if isinstance(value, _VIEWS[2]):
        return (part for pair in value for part in pair)
    if isinstance(value, _VIEWS):
        return value  # type: ignore[no-any-return]
    if isinstance(value, collections.abc.Mapping):
        return _flat_items(value)
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        return value  # type: ignore[no-any-return]
    return None  # opaque: namespaces, macros, loops, undefined, generators


def _flat_items(mapping: Any) -> Iterable[Any]:
    for key, item in mapping.items():
        yield key
        yield item


def _header(value: Any) -> int:
    return 2 * SLOT * len(value) if isinstance(value, collections.abc.Mapping) else SLOT * len(value)


def leaf_size(value: Any) -> int:
    if isinstance(value, _SIZED_BY_LEN):
        return len(value)
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return max(SLOT, value.bit_length() // 8)
    return SLOT


class RenderBudget:
    """The counters of one render.  Owned by the render's thread; the caller only sets ``stopped``."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.loops = 0
        self.total = 0  # sizes of the values built so far, added up
        self.stopped: str | None = None  # set by the caller when it abandons the render
        self.violation: str | None = None  # the first limit broken, even if template code swallowed it
        self._memo: dict[int, tuple[int, int, Any]] = {}  # id -> (size, depth, the object: keeps the id unique)

    # -- failing

    def fail(self, message: str) -> NoReturn:
        if self.violation is None:
            self.violation = message
        raise TemplateError(message)

    def check_stopped(self) -> None:
        if self.stopped is not None:
            self.fail(self.stopped)

    # -- loops

    def count_loops(self, n: int = 1) -> None:
        self.loops += n
        if self.loops > self.limits.max_loop_iterations or self.stopped is not None:
            self.check_stopped()
            self.fail(f"chat template ran more than {self.limits.max_loop_iterations} loop iterations")

    # -- sizes

    def expect(self, size: int, what: str) -> None:
        """Refuse an operation predicted to build more than one value may hold."""
        if size > self.limits.max_value_size:
            self.fail(f"chat template: {what} would make about {size:,} bytes "
                      f"(the limit is {self.limits.max_value_size:,})")

    def expect_int(self, digits: float, what: str) -> None:
        if digits > self.limits.max_int_digits:
            self.fail(f"chat template: {what} would make an integer of about {int(digits):,} digits "
                      f"(the limit is {self.limits.max_int_digits:,})")

    def measure(self, value: Any) -> tuple[int, int]:
        """(size, depth) of ``value`` counted through every reference; stops early past the limit."""
        if type(value) is str:
            return len(value), 0
        children = _children(value)
        if children is None:
            return leaf_size(value), 0
        known = self._memo.get(id(value))
        if known is not None:
            return known[0], known[1]
        return self._walk(value, children)

    def _walk(self, root: Any, children: Iterable[Any]) -> tuple[int, int]:
        # Iterative, memoized: a shared child is walked once however often it is referenced,
        # so measuring costs what building cost, even for [[x] * 1000] * 1000.
        memo, limit = self._memo, self.limits.max_value_size
        in_progress = (SLOT, 0, None)  # a cycle (caller data can have one): counted as a leaf
        memo[id(root)] = in_progress
        stack: list[list[Any]] = [[root, iter(children), _header(root), 0]]
        while stack:
            frame = stack[-1]
            for child in frame[1]:
                grandchildren = _children(child)
                if grandchildren is None:
                    size, depth = leaf_size(child), 0
                else:
                    known = memo.get(id(child))
                    if known is None:
                        if len(stack) >= MAX_DEPTH:
                            return self._give_up(stack, limit + 1, MAX_DEPTH + 1)
                        memo[id(child)] = in_progress
                        stack.append([child, iter(grandchildren), _header(child), 0])
                        break
                    size, depth = known[0], known[1]
                frame[2] += size
                frame[3] = max(frame[3], depth + 1)
                if frame[2] > limit or frame[3] > MAX_DEPTH:
                    return self._give_up(stack, frame[2], frame[3])
            else:
                stack.pop()
                obj, size, depth = frame[0], frame[2], frame[3]
                memo[id(obj)] = (size, depth, obj)
                if stack:
                    parent = stack[-1]
                    parent[2] += size
                    parent[3] = max(parent[3], depth + 1)
                    if parent[2] > limit or parent[3] > MAX_DEPTH:
                        return self._give_up(stack, parent[2], parent[3])
        known = memo[id(root)]
        return known[0], known[1]

    def _give_up(self, stack: list[list[Any]], size: int, depth: int) -> tuple[int, int]:
        # Every frame on the stack contains the one that broke the limit: all are too big.
        for frame in stack:
            self._memo[id(frame[0])] = (size, depth, frame[0])
        return size, depth

    def admit(self, value: Any, *, new: bool = True) -> Any:
        """Check a value an operation produced; ``new``: it was built now (counts toward the total)."""
        if type(value) is str or isinstance(value, _SIZED_BY_LEN):
            size = len(value)
            self.expect(size, "a string")
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > self.limits.max_int_bits:
                self.expect_int(value.bit_length() * _LOG10_2, "arithmetic")
            size = leaf_size(value)
        elif _children(value) is None:
            size = 0
        else:
            deep, depth = self.measure(value)
            if depth > MAX_DEPTH:
                self.fail(f"chat template built a value nested deeper than {MAX_DEPTH} levels")
            self.expect(deep, "a value")
            size = _header(value)
        if new:
            self.total += size
            if self.total > self.limits.max_total_size:
                self.fail(f"chat template built more than {self.limits.max_total_size:,} bytes "
                          "of values in one render")
        return value

    def admit_all(self, values: Iterable[Any]) -> None:
        """Check values that will be held together (a macro's arguments, a concatenation's parts)."""
        size = depth = 0
        for value in values:
            part, part_depth = self.measure(value)
            size += part
            depth = max(depth, part_depth + 1)
        if depth > MAX_DEPTH:
            self.fail(f"chat template built a value nested deeper than {MAX_DEPTH} levels")
        self.expect(size, "these arguments")
