"""How big an operation's result will be, predicted from its arguments before it runs.

Each estimator answers "about how many bytes would this make?" for one
operation that allocates from a number (a width, a count, a repeat) or
multiplies its input (``replace``, ``join``, ``indent``); the sandbox refuses
the operation when the answer is over ``max_value_size``.  Estimates are upper
bounds, cheap to compute (a ``count`` at C speed at most), and never run the
operation itself.
"""

from __future__ import annotations

import collections.abc
import re
from typing import TYPE_CHECKING, Any, Callable, Sequence

from llama_ffi._template_limits import SLOT

if TYPE_CHECKING:
    from llama_ffi._template_limits import RenderBudget

Estimator = Callable[..., int]

_PRINTF = re.compile(r"%(\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.DOTALL)
_SPEC_NUMBER = re.compile(r"\d+")
_HUGE = 1 << 62  # a number too long to even convert: more than any limit
_FLOAT_TEXT = 330  # '%f' % 1e308 is 309 digits
PIECE = 16  # what each piece of a split costs while it is held (a slot and part of an object)
_WHITESPACE = (" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
               "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def number(value: Any) -> int:
    """A width or count argument as Python would use it (0 for what it would reject anyway)."""
    if isinstance(value, int):
        return int(value)
    return 0


def _spelled(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _HUGE


def text_size(budget: RenderBudget, value: Any) -> int:
    """About how long ``str(value)`` is: exact for strings, generous for the rest."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value.bit_length() * 0.30103) + 2
    if isinstance(value, float):
        return _FLOAT_TEXT
    size, _ = budget.measure(value)
    return 4 * size  # repr quotes and escapes: '\x00' is four characters


# -- formatting


def printf_size(budget: RenderBudget, fmt: Any, args: Any) -> int:
    """``fmt % args``: the literal text, every width and precision, every value formatted."""
    if not isinstance(fmt, (str, bytes)):
        return 0
    if isinstance(fmt, bytes):
        fmt = fmt.decode("latin-1")
    positional = list(args) if isinstance(args, tuple) else [args]
    mapping = args if isinstance(args, collections.abc.Mapping) else None
    size = len(fmt)
    for match in _PRINTF.finditer(fmt):
        name, width, precision, conversion = match.groups()
        if conversion == "%":
            continue
        for part in (width, precision):
            if part == "*":
                size += max(number(positional.pop(0)), 0) if positional else 0
            elif part:
                size += _spelled(part)
        if name is not None and mapping is not None:
            value = mapping.get(name[1:-1], "")
        else:
            value = positional.pop(0) if positional else ""
        size += text_size(budget, value) + 32
    return size


def format_spec_size(budget: RenderBudget, value: Any, spec: str) -> int:
    """``format(value, spec)`` as ``str.format`` runs it: every number in the spec can be a width or precision."""
    return text_size(budget, value) + sum(_spelled(n) for n in _SPEC_NUMBER.findall(spec))


# -- str / bytes / int methods, keyed by name; ``s`` is the object the method is bound to


def _pad(budget: RenderBudget, s: Any, width: Any = 0, *_: Any) -> int:
    return max(len(s), number(width))


def _expandtabs(budget: RenderBudget, s: Any, tabsize: Any = 8) -> int:
    tab = "\t" if isinstance(s, str) else b"\t"
    return len(s) + s.count(tab) * max(number(tabsize), 0)


def replace_size(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    kind = str if isinstance(s, str) else bytes
    if not isinstance(s, (str, bytes)) or not isinstance(old, kind) or not isinstance(new, kind):
        return 0  # the method refuses these itself
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(len(new) - len(old), 0)


def _replace(budget: RenderBudget, s: Any, old: Any = "", new: Any = "", count: Any = -1) -> int:
    return replace_size(s, old, new, count)


def join_size(budget: RenderBudget, separator: Any, items: Sequence[Any]) -> int:
    sep = text_size(budget, separator)
    return sum(text_size(budget, item) for item in items) + sep * max(len(items) - 1, 0)


def _join(budget: RenderBudget, s: Any, items: Any = ()) -> int:
    return join_size(budget, s, items) if isinstance(items, collections.abc.Sized) else 0


def _translate(budget: RenderBudget, s: Any, table: Any = None) -> int:
    if isinstance(table, collections.abc.Mapping):
        values: Any = table.values()
    elif isinstance(table, (list, tuple)):
        values = table
    else:
        return len(s)
    longest = max((len(v) for v in values if isinstance(v, (str, bytes))), default=1)
    return len(s) * max(longest, 1)


def _separators(text: Any, chars: str) -> int:
    """How many of ``chars`` ``text`` holds: how many pieces splitting on them can make, at most."""
    if isinstance(text, bytes):
        return sum(text.count(c.encode()) for c in chars if c.isascii())
    return sum(text.count(c) for c in chars) if isinstance(text, str) else 0


def _split(budget: RenderBudget, s: Any, sep: Any = None, maxsplit: Any = -1) -> int:
    # every piece is a new object: PIECE bytes each while the list exists, even if it is refused after
    kind = str if isinstance(s, str) else bytes
    pieces = s.count(sep) if isinstance(sep, kind) and sep else _separators(s, _WHITESPACE)
    if isinstance(maxsplit, int) and maxsplit >= 0:
        pieces = min(pieces, maxsplit)
    return len(s) + PIECE * (pieces + 1)


def _splitlines(budget: RenderBudget, s: Any, keepends: Any = False) -> int:
    return len(s) + PIECE * (_separators(s, "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") + 1)


def _encode(budget: RenderBudget, s: Any, *_: Any, **__: Any) -> int:
    return 4 * len(s)


def _to_bytes(budget: RenderBudget, n: Any, length: Any = 1, *_: Any, **__: Any) -> int:
    return number(length)


TEXT_METHODS: dict[str, Estimator] = {
    "center": _pad, "ljust": _pad, "rjust": _pad, "zfill": _pad,
    "expandtabs": _expandtabs, "replace": _replace, "join": _join,
    "translate": _translate, "encode": _encode,
    "split": _split, "rsplit": _split, "splitlines": _splitlines,
}
INT_METHODS: dict[str, Estimator] = {"to_bytes": _to_bytes}


# -- filters, with Jinja's parameter names; ``value`` is the filtered value


def _center(budget: RenderBudget, value: Any, width: Any = 80) -> int:
    return max(text_size(budget, value), number(width))


def _indent(budget: RenderBudget, s: Any, width: Any = 4, first: Any = False, blank: Any = False) -> int:
    size = text_size(budget, s)
    lines = s.count("\n") + 1 if isinstance(s, str) else size + 1
    step = len(width) if isinstance(width, str) else max(number(width), 0)
    return size + lines * step


def _wordwrap(budget: RenderBudget, s: Any, width: Any = 79, break_long_words: Any = True,
              wrapstring: Any = None, break_on_hyphens: Any = True) -> int:
    size = text_size(budget, s)
    # every line ends at a width or at whitespace: no more lines than that; textwrap lists every word first
    breaks = _separators(s, _WHITESPACE) if isinstance(s, str) else size
    lines = size // max(number(width), 1) + breaks + 1
    return size + lines * (len(wrapstring) if isinstance(wrapstring, str) else 1) + PIECE * breaks


def _title(budget: RenderBudget, s: Any) -> int:
    # Jinja splits the text into words and separators first (a list of every piece)
    size = text_size(budget, s)
    return size + 2 * PIECE * (_separators(s, _WHITESPACE + "-({[<") if isinstance(s, str) else size)


def _format(budget: RenderBudget, value: Any, *args: Any, **kwargs: Any) -> int:
    return printf_size(budget, value if isinstance(value, str) else str(value), kwargs or args)


def _replace_filter(budget: RenderBudget, s: Any, old: Any = "", new: Any = "", count: Any = None) -> int:
    # the filter turns all three into strings first (they are admitted values: str() of them is bounded)
    text, old, new = (v if isinstance(v, str) else str(v) for v in (s, old, new))
    return replace_size(text, old, new, -1 if count is None else count)


def _batch(budget: RenderBudget, value: Any, linecount: Any = 1, fill_with: Any = None) -> int:
    return SLOT * max(number(linecount), 0) if fill_with is not None else 0


def _slice(budget: RenderBudget, value: Any, slices: Any = 1, fill_with: Any = None) -> int:
    budget.count_loops(max(number(slices), 0))  # one list per slice, however few items there are
    return 0


def _round(budget: RenderBudget, value: Any, precision: Any = 0, method: Any = "common") -> int:
    # round(int, -n) and the floor/ceil methods compute 10 ** n
    budget.expect_int(abs(number(precision)), "the 'round' filter")
    return 0


def _pprint(budget: RenderBudget, value: Any) -> int:
    size, depth = budget.measure(value)
    return 4 * size * (depth + 2)  # one indented line per item


def _list(budget: RenderBudget, value: Any) -> int:
    return SLOT * len(value) if isinstance(value, collections.abc.Sized) else 0


def _escape(budget: RenderBudget, value: Any) -> int:
    return 5 * text_size(budget, value)  # '"' becomes '&#34;'


def sum_size(budget: RenderBudget, items: Sequence[Any], start: Any) -> int:
    """``sum(items, start)`` of lists or tuples copies the total once per item: refuse the quadratic case."""
    if isinstance(start, (int, float, complex)):
        return 0
    total = budget.measure(start)[0] + sum(budget.measure(item)[0] for item in items)
    if total * len(items) > budget.limits.max_total_size:
        budget.fail(f"chat template: sum() of {len(items)} sequences would copy about "
                    f"{total * len(items):,} bytes")
    return total


FILTERS: dict[str, Estimator] = {
    "center": _center, "indent": _indent, "wordwrap": _wordwrap, "format": _format,
    "replace": _replace_filter, "batch": _batch, "slice": _slice, "pprint": _pprint,
    "list": _list, "escape": _escape, "e": _escape, "forceescape": _escape, "title": _title,
    "round": _round,
}
