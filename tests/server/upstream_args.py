"""Read the option table of upstream's ``common/arg.cpp`` (the fetched source), for tests.

Only the shape of each ``add_opt(common_arg(...))`` call is read: its flags, negative flags,
whether it takes a value, its environment variable and the examples it belongs to.  The
rule that decides which options an example gets is upstream's ``add_opt`` lambda: an option
belongs to the example it names, or to every example when it names ``LLAMA_EXAMPLE_COMMON``
(the default), unless the example is in its excludes.  Options added only under
``if (ex == LLAMA_EXAMPLE_SERVER)`` (``-np``) carry the server example themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["UpstreamOption", "read_options", "server_options"]


@dataclass
class UpstreamOption:
    flags: list[str]
    negative: list[str] = field(default_factory=list)
    n_values: int = 0
    env: str | None = None
    examples: set[str] = field(default_factory=lambda: {"LLAMA_EXAMPLE_COMMON"})
    excludes: set[str] = field(default_factory=set)
    value_hint: str | None = None
    removed: bool = False  # its handler only says the option was removed

    def in_example(self, example: str) -> bool:
        return ((example in self.examples or "LLAMA_EXAMPLE_COMMON" in self.examples)
                and example not in self.excludes)


def _skip_literal(text: str, i: int) -> int:
    """Index after the string or char literal starting at ``i``."""
    quote = text[i]
    i += 1
    while text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _strip_comments(text: str) -> str:
    """The source without // and /* */ comments (literals kept as they are)."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"' or (ch == "'" and not text[i - 1].isalnum()):
            end = _skip_literal(text, i)
            out.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _split_call(text: str, start: int) -> tuple[list[str], int]:
    """Top-level comma-separated arguments of the call whose '(' is at ``start``."""
    depth, i, parts, begin = 0, start, [], start + 1
    while True:
        ch = text[i]
        if ch == '"' or (ch == "'" and not text[i - 1].isalnum()):
            i = _skip_literal(text, i)
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                parts.append(text[begin:i].strip())
                return parts, i + 1
        elif ch == "," and depth == 1:
            parts.append(text[begin:i].strip())
            begin = i + 1
        i += 1


_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _strings(part: str) -> list[str]:
    return _STRING.findall(part)


def _names(part: str) -> set[str]:
    return set(re.findall(r"LLAMA_EXAMPLE_[A-Z0-9_]+", part))


def read_options(source: str) -> list[UpstreamOption]:
    """Every option registered through ``add_opt(common_arg(...))``."""
    source = _strip_comments(source)
    named_sets = {m.group(1): _names(m.group(2)) for m in re.finditer(
        r"initializer_list<enum llama_example>\s+(\w+)\s*=\s*\{([^}]*)\}", source)}
    options = []
    for match in re.finditer(r"add_opt\(common_arg\(", source):
        args, end = _split_call(source, match.end() - 1)
        # the chained setters follow the constructor up to add_opt's closing parenthesis
        _, tail_end = _split_call(source, match.start() + len("add_opt"))
        tail = source[end:tail_end]
        option = UpstreamOption(flags=_strings(args[0]))
        rest = args[1:-1]  # between the flags and the handler
        if rest and rest[0].startswith("{"):
            option.negative = _strings(rest[0])
        else:
            # (flags, help, h) takes nothing; (flags, HINT, help, h) one; two hints: two
            option.n_values = len(rest) - 1
            if option.n_values:
                hints = _strings(rest[0])
                option.value_hint = hints[0] if hints else rest[0]
        option.removed = "arg_removed(" in args[-1]
        env = re.search(r'\.set_env\("([^"]+)"\)', tail)
        option.env = env.group(1) if env else None
        for setter, target in (("set_examples", "examples"), ("set_excludes", "excludes")):
            found = re.search(rf"\.{setter}\(\s*(\{{[^}}]*\}}|\w+)\s*\)", tail)
            if found:
                value = found.group(1)
                setattr(option, target, _names(value) if value.startswith("{")
                        else set(named_sets[value]))
        options.append(option)
    return options


def server_options(path: Path) -> list[UpstreamOption]:
    """The options llama-server accepts, as its parser is built for LLAMA_EXAMPLE_SERVER."""
    return [o for o in read_options(path.read_text(encoding="utf-8"))
            if o.in_example("LLAMA_EXAMPLE_SERVER")]
