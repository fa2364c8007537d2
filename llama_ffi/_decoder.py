"""``TokenDecoder``: token ids -> text, never splitting a UTF-8 sequence."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_ffi._vocab import Vocab


class TokenDecoder:
    """Incremental detokenizer for streaming.

    A token can end in the middle of a multi-byte character (byte-fallback
    tokens, emoji split over tokens); ``feed`` holds such bytes back until the
    character is complete, so what it returns is always whole characters.
    Invalid bytes become U+FFFD.
    """

    __slots__ = ("_vocab", "_special", "_decoder", "_held")

    def __init__(self, vocab: Vocab, *, special: bool = False) -> None:
        self._vocab = vocab
        self._special = special
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._held = False  # the decoder holds bytes of an incomplete character

    def feed(self, token: int) -> str:
        """Text completed by ``token`` ('' while a character is still partial)."""
        data = self._vocab.token_to_piece(token, special=self._special)
        if not self._held:
            # almost every piece is whole characters: C's decode, not the incremental decoder
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return self.feed_bytes(data)

    def feed_bytes(self, data: bytes) -> str:
        text = self._decoder.decode(data)
        self._held = bool(self._decoder.getstate()[0])
        return text

    @property
    def pending(self) -> bool:
        """True while bytes of an incomplete character are held back."""
        return self._held

    def flush(self) -> str:
        """Whatever is held back, with replacement characters; the decoder starts afresh."""
        text = self._decoder.decode(b"", final=True)
        self.reset()
        return text

    def reset(self) -> None:
        self._decoder.reset()
        self._held = False
