"""Splitting generated text into reasoning and content as it streams.

A thinking block is the reasoning: it opens with the start tag at the beginning of the answer
(or was opened by the prompt) and ends with the end tag; everything after it is content.  Text
that may be the beginning of a tag is held back until the next piece tells, so a tag split
over tokens never leaks into either part; the whitespace around the tags belongs to neither.
A block cut short by the token limit keeps what it has as reasoning, and a held-back piece of
the end tag is dropped then.
"""

from __future__ import annotations

from ._reasoning import ThinkTags

REASONING = "reasoning"
CONTENT = "content"

_BEFORE, _INSIDE, _AFTER = range(3)


def partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that begins ``tag`` (held back while
    streaming: the next piece may complete the tag)."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ReasoningSplitter:
    """Feed text pieces, get ``(kind, text)`` parts: kind is ``REASONING`` or ``CONTENT``."""

    __slots__ = ("_tags", "_state", "_held", "_gap")

    def __init__(self, tags: ThinkTags, opened: bool) -> None:
        self._tags = tags
        self._state = _INSIDE if opened else _BEFORE
        self._held = ""     # text not yet given out
        self._gap = True    # at the start of a part: leading whitespace is dropped

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._held += text
        while self._held:
            state = self._state
            if state == _AFTER:
                self._emit(out, CONTENT, self._held)
                self._held = ""
            elif state == _BEFORE:
                if not self._before():
                    break
            elif not self._inside(out):
                break
        return out

    def finish(self, cut: bool) -> list[tuple[str, str]]:
        """What is left at the end; ``cut``: the token limit ended the text."""
        out: list[tuple[str, str]] = []
        held, self._held = self._held, ""
        if self._state == _INSIDE:
            keep = held.rstrip()
            if cut:
                keep = keep[:len(keep) - partial_suffix(keep, self._tags.end)].rstrip()
            self._emit(out, REASONING, keep)
        elif not (cut and self._state == _BEFORE and self._tags.start.startswith(held.lstrip())):
            self._emit(out, CONTENT, held)
        return out

    def _before(self) -> bool:
        """At the beginning: is a thinking block opening?  False while it cannot tell."""
        start = self._tags.start
        text = self._held.lstrip()
        if text.startswith(start):
            self._held = text[len(start):]
            self._state, self._gap = _INSIDE, True
            return True
        if text and not start.startswith(text):
            self._state = _AFTER
            return True
        return False

    def _inside(self, out: list[tuple[str, str]]) -> bool:
        end = self._tags.end
        at = self._held.find(end)
        if at >= 0:
            self._emit(out, REASONING, self._held[:at].rstrip())
            self._held = self._held[at + len(end):]
            self._state, self._gap = _AFTER, True
            return True
        # keep back what may begin the end tag, and trailing whitespace (it may precede it)
        keep = partial_suffix(self._held, end)
        ready = self._held[:len(self._held) - keep]
        sendable = ready.rstrip()
        self._emit(out, REASONING, sendable)
        self._held = self._held[len(sendable):]
        return False

    def _emit(self, out: list[tuple[str, str]], kind: str, text: str) -> None:
        if self._gap:
            text = text.lstrip()
        if text:
            self._gap = False
            out.append((kind, text))


def split_text(tags: ThinkTags, opened: bool, text: str, cut: bool) -> tuple[str, str]:
    """(reasoning, content) of a whole answer."""
    splitter = ReasoningSplitter(tags, opened)
    parts = splitter.feed(text) + splitter.finish(cut)
    return ("".join(t for k, t in parts if k == REASONING),
            "".join(t for k, t in parts if k == CONTENT))
