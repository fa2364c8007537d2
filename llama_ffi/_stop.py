"""``StopMatcher``: stop strings over streamed text: what may be sent now, what must wait, where to cut.

The matcher keeps only the text not sent yet.  After each piece it either finds a complete
stop string (everything before it is sendable, the rest is dropped), or holds back the longest
tail that is still the beginning of some stop string.  Because that tail is always held, a
stop string can never begin in text that was already sent, so the unsent text is all that has
to be searched.
"""

from __future__ import annotations

__all__ = ["StopMatcher"]


class StopMatcher:
    __slots__ = ("_words", "_pending", "active")

    def __init__(self, words: list[str]) -> None:
        # Longest first so that, of two stop strings matching at the same place, the longer
        # one is reported (either way the content is cut at the same point).
        self._words = sorted({w for w in words if w}, key=len, reverse=True)
        self._pending = ""
        # read for every generated token: an attribute, not a property
        self.active: bool = bool(self._words)

    @property
    def pending(self) -> str:
        """Text held back so far (sendable if generation ends for another reason)."""
        return self._pending

    def feed(self, piece: str) -> tuple[str, str | None]:
        """Add generated text; return (text that is safe to send now, stop word or None).

        When a stop word is returned, the text returned is what preceded it and the matcher
        should not be fed again.
        """
        text = self._pending + piece
        hit_at = -1
        hit_word = None
        for word in self._words:
            at = text.find(word)
            if at != -1 and (hit_at == -1 or at < hit_at):
                hit_at, hit_word = at, word
        if hit_word is not None:
            self._pending = ""
            return text[:hit_at], hit_word
        n = len(text)
        hold = 0
        for word in self._words:
            # The earliest start within the last len(word)-1 characters whose tail is the
            # beginning of the word gives the longest tail to hold for this word.
            i = text.find(word[0], max(0, n - len(word) + 1))
            while i != -1 and n - i > hold:
                if word.startswith(text[i:]):
                    hold = n - i
                    break
                i = text.find(word[0], i + 1)
        if hold:
            self._pending = text[n - hold:]
            return text[: n - hold], None
        self._pending = ""
        return text, None

    def release(self) -> str:
        """Give up the held text (generation ended without the stop string completing)."""
        text, self._pending = self._pending, ""
        return text
