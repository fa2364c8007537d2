"""Media in prompts: a prompt with images or audio becomes tokens plus encoded media pieces.

The projector's vision (or audio) tower runs here, on the caller's thread (the HTTP worker
pool), never on the engine's thread; recently encoded media are kept by content hash, so a
second question about the same image does not encode it again.  In the request's tokens a
media piece is a run of placeholder ids derived from its content hash: negative, so never a
real token, and equal for equal content, so the prompt cache reuses its cells.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .types import MediaPiece

if TYPE_CHECKING:
    from llama_ffi import Chunk, MediaEmbeddings, Projector

__all__ = ["MediaEncoder", "MediaPrompt", "placeholders"]

_INT31 = 2**31 - 1


def placeholders(media_id: str, n: int) -> list[int]:
    """The ids standing for a media piece's ``n`` cells (int32, negative)."""
    base = int(media_id[:15], 16) if media_id else 0
    return [-1 - (base + i) % _INT31 for i in range(n)]


@dataclass
class MediaPrompt:
    tokens: list[int]
    media: tuple[MediaPiece, ...]
    owner: Any                 # llama_ffi.Chunks: close() when the request is over
    bos_added: bool


class MediaEncoder:
    """Tokenizes prompts with media and encodes the media, keeping the newest encodings."""

    def __init__(self, projector: Projector, cache_bytes: int = 256 * 1024 * 1024) -> None:
        self.projector = projector
        self._cache: OrderedDict[str, MediaEmbeddings] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def prompt(self, text: str, media: list[bytes], *, add_special: bool,
               parse_special: bool) -> MediaPrompt:
        """``text`` holds one ``projector.marker`` per item of ``media`` (encoded bytes).

        ``MediaError`` (a ``ValueError``) for bytes that are not an image or audio clip the
        projector takes, for markers and media that do not pair up, or for media over the
        limits.
        """
        projector = self.projector
        bitmaps = []
        try:
            for data in media:
                bitmaps.append(projector.bitmap_from_bytes(data))
            chunks = projector.tokenize(text, bitmaps, add_special=add_special,
                                        parse_special=parse_special)
        finally:
            for bitmap in bitmaps:
                bitmap.close()
        try:
            tokens: list[int] = []
            pieces = []
            for chunk in chunks:
                if not chunk.is_media:
                    tokens.extend(chunk.tokens)
                    continue
                assert chunk.id is not None
                pieces.append(MediaPiece(len(tokens), chunk.n_tokens, chunk.n_pos, chunk.id,
                                         chunk, self._encoded(chunk)))
                tokens.extend(placeholders(chunk.id, chunk.n_tokens))
        except BaseException:
            chunks.close()
            raise
        vocab = projector.model.vocab
        bos = bool(add_special and vocab.add_bos and tokens and tokens[0] == vocab.bos)
        return MediaPrompt(tokens, tuple(pieces), chunks, bos)

    def _encoded(self, chunk: Chunk) -> MediaEmbeddings:
        key = chunk.id
        assert key is not None
        with self._lock:
            found = self._cache.get(key)
            if found is not None and found.n_tokens == chunk.n_tokens:
                self._cache.move_to_end(key)
                return found
        embeddings = self.projector.encode_chunk(chunk)
        with self._lock:
            old = self._cache.pop(key, None)  # another thread encoded it meanwhile
            if old is not None:
                self._bytes -= old.nbytes
            self._cache[key] = embeddings
            self._bytes += embeddings.nbytes
            while self._bytes > self._cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.nbytes
        return embeddings
