"""Long texts are tokenized in pieces cut right after special-token texts.

libllama's tokenizer first cuts a text at every special-token text
(``tokenizer_st_partition``), and each cut walks its fragment list from the head: a text
holding M special-token texts costs O(M²) in C, where no deadline reaches it.  Measured:
the 40,000 ``<|im_start|>``/``<|im_end|>`` of a 20,000-message chat took 12 s (80,000
would take ~50 s).  Each fragment is then tokenized on its own, so cutting the text where
libllama cuts it too gives the same tokens, piece by piece.

A cut goes after an occurrence of a special-token text that no other occurrence of one at
least as long overlaps (libllama extracts the longest texts first, so such an occurrence is
always extracted), and whose token strips no whitespace around it.  The first piece gets
the BOS (``add_special``); only vocabularies that add nothing else there (SPM and BPE
without an added EOS) are cut, and every piece after a cut begins where libllama's own
fragment does: after a special token.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from llama_ffi._ffi import lib

if TYPE_CHECKING:
    from llama_ffi._vocab import Vocab

__all__ = ["SpecialSplitter", "MIN_BYTES"]

MIN_BYTES = 16 * 1024  # shorter texts go whole (at most ~1,600 special texts: ~10 ms)
PER_PIECE = 256        # special-token texts per piece, about

_SPECIAL = lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_USER_DEFINED | lib.LLAMA_TOKEN_ATTR_UNKNOWN
_NOT_PARSED = lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_UNKNOWN  # without parse_special
_STRIPS = lib.LLAMA_TOKEN_ATTR_LSTRIP | lib.LLAMA_TOKEN_ATTR_RSTRIP
_SPACE = b" \t\n\v\f\r"  # C's isspace, which libllama's stripping uses


class SpecialSplitter:
    """The special-token texts libllama cuts a text at (for one value of ``parse_special``)."""

    def __init__(self, vocab: Vocab, parse_special: bool) -> None:
        ptr = vocab._vocab()
        attrs: dict[bytes, int] = {}
        for tok in range(vocab.n_tokens):
            attr = lib.llama_vocab_get_attr(ptr, tok)
            if attr & _SPECIAL and (parse_special or not attr & _NOT_PARSED):
                text = vocab.token_text(tok)
                attrs[text] = attrs.get(text, 0) | attr
        self._attrs = attrs
        self._texts = sorted(attrs, key=len, reverse=True)
        self._pattern: re.Pattern[bytes] | None = None
        if attrs and b"" not in attrs:
            try:
                self._pattern = re.compile(_trie(self._texts))
            except (RecursionError, re.error, OverflowError):  # absurd texts: never cut
                self._pattern = None

    def split(self, data: bytes) -> list[bytes]:
        """``data`` in pieces that libllama tokenizes to the same tokens, one after another."""
        if self._pattern is None:
            return [data]
        pieces, start, seen = [], 0, 0
        for match in self._pattern.finditer(data):
            seen += 1
            if seen >= PER_PIECE and self._is_cut(data, match.start(), match.end()):
                pieces.append(data[start:match.end()])
                start, seen = match.end(), 0
        pieces.append(data[start:])
        return [piece for piece in pieces if piece]

    def _is_cut(self, data: bytes, start: int, end: int) -> bool:
        text = data[start:end]
        if self._attrs.get(text, _STRIPS) & _STRIPS or text[0] in _SPACE or text[-1] in _SPACE:
            return False
        longest = len(self._texts[0])
        lo = max(0, start - longest + 1)
        window = data[lo:end + longest - 1]
        for other in self._texts:  # the longest first: shorter ones lose to this one
            if len(other) < len(text):
                break
            at = window.find(other)
            while at != -1:
                p = lo + at
                if p < end and p + len(other) > start and not (p == start and other == text):
                    return False
                at = window.find(other, at + 1)
        return True


def _trie(texts: list[bytes]) -> bytes:
    """A regular expression matching any of ``texts``, as a trie (Python's ``re`` tries an
    alternation's branches one by one; a trie tries one byte at a time)."""
    root: dict[int | None, dict] = {}
    for text in texts:
        node = root
        for byte in text:
            node = node.setdefault(byte, {})
        node[None] = {}

    def pattern(node: dict[int | None, dict]) -> bytes:
        branches = [re.escape(bytes([byte])) + pattern(child)
                    for byte, child in node.items() if byte is not None]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        return b"(?:" + body + b")?" if None in node else body

    return pattern(root)
