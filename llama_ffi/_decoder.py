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

    __slots__ = ("_vocab", "_special", "_decoder")

    def __init__(self, vocab: Vocab, *, special: bool = False) -> None:
        self._vocab = vocab
        self._special = special
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, token: int) -> str:
        """Text completed by ``token`` ('' while a character is still partial)."""
        return self._decoder.decode(self._vocab.token_to_piece(token, special=self._special))

    def feed_bytes(self, data: bytes) -> str:
        return self._decoder.decode(data)

    @property
    def pending(self) -> bool:
        """True while bytes of an incomplete character are held back."""
        return bool(self._decoder.getstate()[0])

    def flush(self) -> str:
        """Whatever is held back, with replacement characters; the decoder starts afresh."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text

    def reset(self) -> None:
        self._decoder.reset()
