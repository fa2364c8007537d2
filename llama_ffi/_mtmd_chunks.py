"""libmtmd's data: ``Bitmap`` (one image or audio clip), ``Chunks`` (a tokenized multimodal
prompt) with its ``Chunk`` views, and ``MediaEmbeddings`` (an encoded media chunk).

Made by ``Projector`` (``_mtmd.py``): ``bitmap_from_bytes``, ``tokenize``, ``encode_chunk``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterator

from llama_ffi._errors import LlamaError, MediaError
from llama_ffi._ffi import ffi, lib
from llama_ffi._handle import OwnedHandle

if TYPE_CHECKING:
    from llama_ffi._mtmd import Projector

CHUNK_TYPES = {
    lib.MTMD_INPUT_CHUNK_TYPE_TEXT: "text",
    lib.MTMD_INPUT_CHUNK_TYPE_IMAGE: "image",
    lib.MTMD_INPUT_CHUNK_TYPE_AUDIO: "audio",
}


def _text(ptr: Any) -> str | None:
    return ffi.string(ptr).decode("utf-8", "replace") if ptr != ffi.NULL else None


class Bitmap(OwnedHandle):
    """One decoded image (RGB pixels) or audio clip (mono float PCM), owning its ``mtmd_bitmap``.

    ``id`` names the content: the sha256 of the encoded bytes unless the caller gave one. The
    media chunks tokenized from this bitmap carry it, so a prompt cache can key them by content.
    """

    _closed_error = MediaError
    _kind = "bitmap"

    def __init__(self, ptr: Any) -> None:
        # takes ownership of a fresh mtmd_bitmap*
        self._ptr: Any = ffi.gc(ptr, lib.mtmd_bitmap_free)
        self.is_audio: bool = bool(lib.mtmd_bitmap_is_audio(ptr))
        self.width: int = lib.mtmd_bitmap_get_nx(ptr)    # audio: the number of samples
        self.height: int = lib.mtmd_bitmap_get_ny(ptr)   # audio: 1
        self.n_bytes: int = lib.mtmd_bitmap_get_n_bytes(ptr)

    @property
    def id(self) -> str:
        return _text(lib.mtmd_bitmap_get_id(self._require())) or ""

    def _set_id(self, value: str) -> None:
        if not value or "\0" in value:
            raise ValueError("a bitmap id names its content: a non-empty string without NUL")
        lib.mtmd_bitmap_set_id(self._require(), value.encode("utf-8"))

    @property
    def n_samples(self) -> int:
        return self.width if self.is_audio else 0

    def close(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            ffi.release(ptr)

    def __repr__(self) -> str:
        size = f"{self.width} samples" if self.is_audio else f"{self.width}x{self.height}"
        return f"<Bitmap {'audio' if self.is_audio else 'image'} {size}{' closed' if self._ptr is None else ''}>"


@dataclasses.dataclass(frozen=True, eq=False)
class Chunk:
    """One chunk of a tokenized prompt: text tokens, or one image/audio segment.

    A view into its ``Chunks``: usable (``Projector.encode_chunk``) while they are open.
    ``n_tokens`` embeddings go into the context; they occupy ``n_pos`` positions (fewer than
    ``n_tokens`` for M-RoPE models, equal otherwise). ``non_causal``: libmtmd decodes this
    chunk with non-causal attention, so it must go into the context in one ubatch.
    """

    index: int
    type: str                       # "text", "image" or "audio"
    n_tokens: int
    n_pos: int
    id: str | None                  # media chunks: the bitmap's id (content hash); text: None
    tokens: tuple[int, ...]         # text chunks' tokens; () for media
    non_causal: bool
    _owner: Chunks = dataclasses.field(repr=False)
    _ptr: Any = dataclasses.field(repr=False)

    @property
    def is_media(self) -> bool:
        return self.type != "text"

    def _require(self) -> Any:
        self._owner._require()
        return self._ptr


class Chunks(OwnedHandle):
    """A tokenized multimodal prompt, owning its ``mtmd_input_chunks``: a sequence of ``Chunk``."""

    _closed_error = MediaError
    _kind = "chunk list"

    def __init__(self, projector: Projector, ptr: Any) -> None:
        # takes ownership of a filled mtmd_input_chunks*
        self._ptr: Any = ffi.gc(ptr, lib.mtmd_input_chunks_free)
        self.projector = projector
        ctx = projector._require()
        chunks = []
        count = ffi.new("size_t *")
        for i in range(lib.mtmd_input_chunks_size(ptr)):
            chunk = lib.mtmd_input_chunks_get(ptr, i)
            kind = CHUNK_TYPES.get(lib.mtmd_input_chunk_get_type(chunk))
            if kind is None:
                raise LlamaError(f"libmtmd returned a chunk of unknown type {lib.mtmd_input_chunk_get_type(chunk)}")
            tokens: tuple[int, ...] = ()
            if kind == "text":
                data = lib.mtmd_input_chunk_get_tokens_text(chunk, count)
                tokens = tuple(ffi.unpack(data, count[0])) if count[0] else ()
            chunks.append(Chunk(
                index=i, type=kind, n_tokens=lib.mtmd_input_chunk_get_n_tokens(chunk),
                n_pos=lib.mtmd_input_chunk_get_n_pos(chunk), id=_text(lib.mtmd_input_chunk_get_id(chunk)),
                tokens=tokens, non_causal=kind != "text" and bool(lib.mtmd_decode_use_non_causal(ctx, chunk)),
                _owner=self, _ptr=chunk))
        self._chunks: tuple[Chunk, ...] = tuple(chunks)

    def __len__(self) -> int:
        return len(self._chunks)

    def __iter__(self) -> Iterator[Chunk]:
        self._require()
        return iter(self._chunks)

    def __getitem__(self, i: int) -> Chunk:
        self._require()
        return self._chunks[i]

    @property
    def n_tokens(self) -> int:
        """Embeddings the prompt puts into the context (text tokens and media tokens)."""
        return sum(c.n_tokens for c in self._chunks)

    @property
    def n_pos(self) -> int:
        """Positions the prompt occupies: where the first generated token goes (from 0)."""
        return sum(c.n_pos for c in self._chunks)

    def text_tokens(self) -> list[int]:
        """Every text chunk's tokens, in order (the media left out)."""
        return [t for c in self._chunks for t in c.tokens]

    def close(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            ffi.release(ptr)

    def __repr__(self) -> str:
        kinds = ",".join(c.type for c in self._chunks)
        return f"<Chunks [{kinds}] n_tokens={self.n_tokens}{' closed' if self._ptr is None else ''}>"


class MediaEmbeddings:
    """The output of encoding one media chunk: ``n_tokens`` rows of ``n_embd`` floats, owned by
    Python (a copy: libmtmd's own buffer is overwritten by the next encode).

    Decode them with ``Projector.decode_media`` (or ``Batch.add_embeddings``) at positions
    ``n_past .. n_past + n_pos`` (M-RoPE: ``Projector.media_positions``).
    """

    __slots__ = ("chunk_id", "chunk_type", "n_tokens", "n_embd", "n_pos", "non_causal", "data")

    def __init__(self, chunk: Chunk, n_embd: int, source: Any) -> None:
        self.chunk_id = chunk.id
        self.chunk_type = chunk.type
        self.n_tokens = chunk.n_tokens
        self.n_embd = n_embd
        self.n_pos = chunk.n_pos
        self.non_causal = chunk.non_causal
        n = chunk.n_tokens * n_embd
        self.data: Any = ffi.new("float[]", n)      # float[n_tokens * n_embd], row-major
        ffi.memmove(self.data, source, n * ffi.sizeof("float"))

    @property
    def nbytes(self) -> int:
        return self.n_tokens * self.n_embd * ffi.sizeof("float")

    def view(self) -> memoryview:
        """The floats as a flat memoryview (format "f"), without copying."""
        return memoryview(ffi.buffer(self.data)).cast("B").cast("f")

    def row(self, i: int) -> list[float]:
        if not 0 <= i < self.n_tokens:
            raise IndexError(f"row {i} out of range 0..{self.n_tokens - 1}")
        return ffi.unpack(self.data + i * self.n_embd, self.n_embd)

    def __repr__(self) -> str:
        return f"<MediaEmbeddings {self.chunk_type} {self.n_tokens}x{self.n_embd}>"
