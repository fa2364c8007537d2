"""``Projector``: a multimodal projector (mmproj GGUF) for a ``Model``, owning its ``mtmd_context``.

The path of an image from bytes to the KV cache::

    bitmap = projector.bitmap_from_bytes(png)              # Bitmap (id: sha256 of the bytes)
    chunks = projector.tokenize("Look: <__media__> What is it?", [bitmap])
    n_past = projector.eval_chunks(ctx, chunks, 0)         # libmtmd's helper does it all, or:
    for chunk in chunks:                                    # the pieces, for a batching loop
        if chunk.is_media:
            emb = projector.encode_chunk(chunk)             # MediaEmbeddings: n_tokens x n_embd
            n_past = projector.decode_media(ctx, chunk, emb, n_past)
        else: ...                                           # chunk.tokens, decoded as usual
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from llama_ffi import _media
from llama_ffi._batch import Batch
from llama_ffi._callbacks import load_with_progress
from llama_ffi._context import Context
from llama_ffi._context_params import FLASH_ATTN, default_threads
from llama_ffi._errors import (
    ContextError,
    LlamaError,
    MediaError,
    ModelLoadError,
    check_mtmd,
    check_pointer,
)
from llama_ffi._ffi import ensure_backend, ffi, lib
from llama_ffi._handle import OwnedHandle
from llama_ffi._media import MediaLimits
from llama_ffi._mtmd_chunks import Bitmap, Chunk, Chunks, MediaEmbeddings

if TYPE_CHECKING:
    from llama_ffi._model import Model

__all__ = ["Projector"]


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


class Projector(OwnedHandle):
    """An mmproj file loaded for ``model``: turns images/audio into embeddings for its contexts.

    ``limits`` bound each media input (bytes, pixels, audio seconds). Tokenizing is
    thread-safe; encoding and evaluating are serialized by a lock (libmtmd keeps one output
    buffer per projector). Closing the model closes the projector first.
    """

    _kind = "projector"

    def __init__(
        self,
        model: Model,
        path: str | os.PathLike[str],
        *,
        use_gpu: bool = True,
        n_threads: int | None = None,
        flash_attn: str | bool = "auto",
        image_min_tokens: int | None = None,
        image_max_tokens: int | None = None,
        media_marker: str | None = None,
        warmup: bool = True,
        limits: MediaLimits | None = None,
        progress: Callable[[float], bool] | None = None,
    ) -> None:
        ensure_backend()
        model_ptr = model._require()
        self.path = Path(path)
        if model.vocab_only:
            # libmtmd skips its width check against a model without weights, and aborts later
            raise ModelLoadError(f"{model.path.name} was loaded with vocab_only=True: a projector needs its weights")
        if not self.path.is_file():
            raise ModelLoadError(f"projector file not found: {self.path}")
        if isinstance(flash_attn, bool):
            flash_attn = "on" if flash_attn else "off"
        if flash_attn not in FLASH_ATTN:
            raise ValueError(f"flash_attn must be one of {sorted(FLASH_ATTN)}, not {flash_attn!r}")
        for name, value in (("image_min_tokens", image_min_tokens), ("image_max_tokens", image_max_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        if media_marker is not None and (not media_marker or "\0" in media_marker):
            raise ValueError("media_marker must be a non-empty string without NUL")

        params = lib.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = n_threads if n_threads and n_threads > 0 else default_threads()
        params.flash_attn_type = FLASH_ATTN[flash_attn]
        params.warmup = warmup
        if image_min_tokens is not None:
            params.image_min_tokens = image_min_tokens
        if image_max_tokens is not None:
            params.image_max_tokens = image_max_tokens
        marker = ffi.new("char[]", media_marker.encode("utf-8")) if media_marker else None
        if marker is not None:
            params.media_marker = marker
        ptr = load_with_progress(
            lambda: lib.mtmd_init_from_file(os.fsencode(self.path), model_ptr, params),
            lib.mtmd_free, params, progress, self.path)
        check_pointer(ptr, ModelLoadError,
                      f"failed to load projector {self.path} for {model.path.name} (see the llama_ffi.native "
                      "log: not an mmproj GGUF, or made for a model of another width?)")
        # the destructor keeps the model's handle: a projector goes before its model
        self._ptr: Any = ffi.gc(ptr, lambda p, _model=model_ptr: lib.mtmd_free(p))
        self.model = model
        self.limits = limits or MediaLimits()
        self.n_embd: int = lib.llama_model_n_embd_inp(model_ptr)   # floats per media embedding
        self.supports_vision: bool = bool(lib.mtmd_support_vision(ptr))
        self.supports_audio: bool = bool(lib.mtmd_support_audio(ptr))
        rate = lib.mtmd_get_audio_sample_rate(ptr)
        self.audio_sample_rate: int | None = rate if rate > 0 else None
        self.marker: str = ffi.string(lib.mtmd_get_marker(ptr)).decode("utf-8")
        self.uses_mrope: bool = bool(lib.mtmd_decode_use_mrope(ptr))
        self.uses_non_causal: bool = bool(lib.mtmd_decode_use_non_causal(ptr, ffi.NULL))  # for images
        self._lock = threading.Lock()          # one encode at a time: one output buffer
        self._state = threading.Condition()    # counts the calls using the handle
        self._users = 0
        model._add_dependent(self)

    @contextlib.contextmanager
    def _using(self) -> Iterator[Any]:
        """The handle, kept alive while the block runs: ``close`` waits for the calls in flight
        (tokenizing runs in many threads at once)."""
        with self._state:
            ptr = self._require()
            self._users += 1
        try:
            yield ptr
        finally:
            with self._state:
                self._users -= 1
                self._state.notify_all()

    def close(self) -> None:
        with self._state:
            while self._users:
                self._state.wait()
            if self._ptr is None:
                return
            ptr, self._ptr = self._ptr, None
        ffi.release(ptr)

    def __repr__(self) -> str:
        what = "+".join(k for k, on in (("vision", self.supports_vision), ("audio", self.supports_audio)) if on)
        return f"<Projector {self.path.name} {what}{' closed' if self._ptr is None else ''}>"

    # ------------------------------------------------------------------ media

    def _check_kind(self, audio: bool) -> None:
        if audio and not self.supports_audio:
            raise MediaError(f"projector {self.path.name} takes no audio")
        if not audio and not self.supports_vision:
            raise MediaError(f"projector {self.path.name} takes no images")

    def _finish(self, bitmap: Bitmap, id: str | None) -> Bitmap:
        try:
            if bitmap.is_audio:
                seconds = bitmap.n_samples / (self.audio_sample_rate or 1)
                if bitmap.n_samples < 2:   # libmtmd asserts (aborts) on a 1-sample clip
                    raise MediaError("the audio has fewer than 2 samples")
                if seconds > self.limits.max_audio_seconds:
                    raise MediaError(f"the audio is {seconds:.1f} s long; the limit is "
                                     f"{self.limits.max_audio_seconds} s")
            elif bitmap.width * bitmap.height > self.limits.max_pixels:
                raise MediaError(f"the image is {bitmap.width} x {bitmap.height} pixels; "
                                 f"the limit is {self.limits.max_pixels} pixels")
            if id is not None:
                bitmap._set_id(id)
        except BaseException:
            bitmap.close()
            raise
        return bitmap

    def bitmap_from_bytes(self, data: bytes | bytearray | memoryview, *, id: str | None = None) -> Bitmap:
        """Decode an encoded image (PNG, JPEG, GIF, BMP) or audio file (WAV, MP3, FLAC).

        ``id`` (default: the sha256 of ``data``) names the content in the media chunks.
        ``MediaError`` for anything else, for data over ``limits``, or a kind the projector lacks.
        """
        data = bytes(data)
        info = _media.check(data, self.limits)
        self._check_kind(info.kind == "audio")
        with self._using() as ptr:
            wrapper = lib.mtmd_helper_bitmap_init_from_buf(ptr, ffi.from_buffer(data), len(data), False,
                                                           lib.mtmd_helper_init_opt_default())
        if wrapper.video_ctx != ffi.NULL:   # never for the formats let through, but owned if so
            lib.mtmd_helper_video_free(wrapper.video_ctx)
            if wrapper.bitmap != ffi.NULL:
                lib.mtmd_bitmap_free(wrapper.bitmap)
            raise MediaError("video input is not supported")
        check_pointer(wrapper.bitmap, MediaError,
                      f"the {info.format.upper()} data could not be decoded (corrupt or truncated?)")
        return self._finish(Bitmap(wrapper.bitmap), id)

    def bitmap_from_file(self, path: str | os.PathLike[str], *, id: str | None = None) -> Bitmap:
        """``bitmap_from_bytes`` of a file's content (size checked before it is read)."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise MediaError(f"cannot read media file {path}: {exc.strerror}") from exc
        if size > self.limits.max_bytes:
            raise MediaError(f"{path} is {size} bytes; the limit is {self.limits.max_bytes}")
        return self.bitmap_from_bytes(path.read_bytes(), id=id)

    def bitmap_from_rgb(self, width: int, height: int, data: bytes | bytearray | memoryview, *,
                        id: str | None = None) -> Bitmap:
        """An image from raw RGB pixels (``width * height * 3`` bytes, row by row)."""
        self._require()
        self._check_kind(audio=False)
        data = bytes(data)
        if width < 1 or height < 1:
            raise MediaError(f"an image of {width} x {height} pixels")
        if width * height > self.limits.max_pixels:
            raise MediaError(f"the image is {width} x {height} pixels; the limit is {self.limits.max_pixels} pixels")
        if len(data) != width * height * 3:
            raise MediaError(f"{width} x {height} RGB pixels are {width * height * 3} bytes, not {len(data)}")
        bitmap = Bitmap(check_pointer(lib.mtmd_bitmap_init(width, height, data), MediaError, "mtmd_bitmap_init failed"))
        return self._finish(bitmap, id if id is not None else _sha256(b"rgb %d %d " % (width, height), data))

    def bitmap_from_pcm(self, samples: Any, *, id: str | None = None) -> Bitmap:
        """An audio clip from mono float32 PCM at ``audio_sample_rate`` (any float32 buffer)."""
        self._require()
        self._check_kind(audio=True)
        buf = ffi.from_buffer("float[]", samples)
        n = ffi.sizeof(buf) // ffi.sizeof("float")
        if n < 2:
            raise MediaError("the audio has fewer than 2 samples")
        raw = ffi.buffer(buf)[:]
        bitmap = Bitmap(check_pointer(lib.mtmd_bitmap_init_from_audio(n, buf), MediaError,
                                      "mtmd_bitmap_init_from_audio failed"))
        return self._finish(bitmap, id if id is not None else _sha256(b"pcm ", raw))

    # ------------------------------------------------------------------ prompts

    def tokenize(self, text: str, bitmaps: Sequence[Bitmap] = (), *, add_special: bool = True,
                 parse_special: bool = True) -> Chunks:
        """Split ``text`` at each media marker (``marker``) and put the next bitmap's tokens there.

        The text between markers is tokenized as ``Vocab.tokenize`` would (BOS added when
        ``add_special`` and the model wants it). ``MediaError`` when the markers and bitmaps
        do not pair up, or when the projector wraps media in tokens the model lacks.
        """
        self._require()
        for bitmap in bitmaps:
            if not isinstance(bitmap, Bitmap):
                raise TypeError(f"bitmaps must be Bitmap objects, not {type(bitmap).__name__}")
            bitmap._require()
            self._check_kind(bitmap.is_audio)
        n_markers = text.count(self.marker)
        if n_markers != len(bitmaps):
            raise MediaError(f"the text has {n_markers} media marker(s) {self.marker!r} for {len(bitmaps)} media")
        encoded = text.encode("utf-8")
        text_buf = ffi.new("char[]", encoded)
        inp = ffi.new("mtmd_input_text *", {"text": text_buf, "text_len": len(encoded),
                                            "add_special": add_special, "parse_special": parse_special})
        array = ffi.new("mtmd_bitmap *[]", [b._ptr for b in bitmaps]) if bitmaps else ffi.NULL
        with self._using() as ptr:
            out = check_pointer(lib.mtmd_input_chunks_init(), LlamaError, "mtmd_input_chunks_init failed")
            return self._chunks(out, lib.mtmd_tokenize(ptr, out, inp, array, len(bitmaps)))

    def tokenize_parts(self, parts: Sequence[str | Bitmap], *, add_special: bool = True,
                       parse_special: bool = True) -> Chunks:
        """Like ``tokenize``, with each bitmap given in place rather than by a marker: no text is
        ever taken for a marker, so user text cannot move or add media."""
        self._require()
        keep: list[Any] = []
        part_structs = []
        for part in parts:
            if isinstance(part, Bitmap):
                part._require()
                self._check_kind(part.is_audio)
                part_structs.append({"text": ffi.NULL, "bitmap": part._ptr})
            elif isinstance(part, str):
                encoded = part.encode("utf-8")
                buf = ffi.new("char[]", encoded)
                text = ffi.new("mtmd_input_text *", {"text": buf, "text_len": len(encoded),
                                                     "add_special": False, "parse_special": parse_special})
                keep += [buf, text]
                part_structs.append({"text": text, "bitmap": ffi.NULL})
            else:
                raise TypeError(f"parts are str or Bitmap, not {type(part).__name__}")
        if not part_structs:
            raise ValueError("tokenize_parts needs at least one part")
        structs = ffi.new("mtmd_input_part[]", part_structs)
        pointers = ffi.new("mtmd_input_part *[]", [structs + i for i in range(len(part_structs))])
        with self._using() as ptr:
            out = check_pointer(lib.mtmd_input_chunks_init(), LlamaError, "mtmd_input_chunks_init failed")
            return self._chunks(out, lib.mtmd_tokenize_from_parts(ptr, out, pointers, len(part_structs), add_special))

    def _chunks(self, out: Any, code: int) -> Chunks:
        """Own the chunks ``mtmd_tokenize*`` filled (``code`` its result), checking their tokens."""
        if code:
            lib.mtmd_input_chunks_free(out)
            check_mtmd(code, "mtmd_tokenize")
        chunks = Chunks(self, out)
        n_vocab = self.model.vocab.n_tokens
        if any(not 0 <= t < n_vocab for c in chunks for t in c.tokens):
            chunks.close()
            # e.g. SmolVLM's projector (idefics3) on a model without its <global-img> tokens:
            # libmtmd puts -1 there, and a decode of it fails
            raise MediaError(f"projector {self.path.name} wraps media in special tokens that "
                             f"{self.model.path.name}'s vocabulary lacks (a projector made for another model?)")
        return chunks

    def _check_chunk(self, chunk: Chunk) -> Any:
        if chunk._owner.projector is not self:
            raise LlamaError("the chunk was tokenized by another projector")
        if not chunk.is_media:
            raise ValueError(f"chunk {chunk.index} is text, not media")
        return chunk._require()

    def _check_context(self, ctx: Context, seq_id: int) -> Any:
        if ctx.model is not self.model:
            raise LlamaError("the context belongs to another model than the projector")
        ctx._check_seq(seq_id)
        return ctx._require()

    @staticmethod
    def _check_one_ubatch(ctx: Context, chunk: Chunk, n_batch: int) -> None:
        limit = min(n_batch, ctx.n_ubatch)
        if chunk.non_causal and chunk.n_tokens > limit:
            # libllama asserts (aborts the process) on a non-causal batch larger than a ubatch
            raise ContextError(f"the {chunk.type} chunk has {chunk.n_tokens} tokens, decoded non-causally in one "
                               f"ubatch: n_batch and n_ubatch must be at least {chunk.n_tokens} (they are "
                               f"{n_batch} and {ctx.n_ubatch})")

    # ------------------------------------------------------------------ encoding and decoding

    def encode_chunk(self, chunk: Chunk) -> MediaEmbeddings:
        """Run the projector on one media chunk: its ``n_tokens x n_embd`` input embeddings."""
        chunk_ptr = self._check_chunk(chunk)
        with self._lock, self._using() as ptr:
            check_mtmd(lib.mtmd_encode_chunk(ptr, chunk_ptr), "mtmd_encode_chunk")
            return MediaEmbeddings(chunk, self.n_embd, lib.mtmd_get_output_embd(ptr))

    def media_positions(self, chunk: Chunk, n_past: int) -> list[tuple[int, int, int, int]] | None:
        """M-RoPE models: the (t, y, x, z) position of each of the chunk's embeddings when it
        starts at ``n_past`` (in ``Batch(..., n_pos=4).add_embeddings``' order). Others: None
        (the embeddings sit at ``n_past, n_past + 1, ...``)."""
        chunk_ptr = self._check_chunk(chunk)
        if not self.uses_mrope:
            return None
        if chunk.type == "audio":
            return [(n_past + i,) * 4 for i in range(chunk.n_tokens)]
        image = lib.mtmd_input_chunk_get_tokens_image(chunk_ptr)
        out = ffi.new("struct mtmd_decoder_pos[]", chunk.n_tokens)
        lib.mtmd_helper_image_get_decoder_pos(image, n_past, out)
        return [(p.t, p.y, p.x, p.z) for p in out]

    def decode_media(self, ctx: Context, chunk: Chunk, embeddings: MediaEmbeddings, n_past: int,
                     seq_id: int = 0, *, logits_last: bool = False, n_batch: int | None = None) -> int:
        """Decode an encoded media chunk into ``seq_id`` from position ``n_past``, in batches of
        ``n_batch`` embeddings (one batch if the chunk needs non-causal attention, which is
        switched on around it). Returns ``n_past + chunk.n_pos``."""
        self._check_chunk(chunk)
        self._check_context(ctx, seq_id)
        if (embeddings.chunk_id, embeddings.n_tokens, embeddings.n_embd) != (chunk.id, chunk.n_tokens, self.n_embd):
            raise ValueError("the embeddings were not encoded from this chunk by this projector")
        n_batch = min(n_batch or ctx.n_batch, ctx.n_batch)
        if n_batch < 1:
            raise ValueError("n_batch must be >= 1")
        self._check_one_ubatch(ctx, chunk, n_batch)
        positions = self.media_positions(chunk, n_past)
        n = chunk.n_tokens
        row_bytes = self.n_embd * ffi.sizeof("float")
        was_causal = ctx.causal_attn
        if chunk.non_causal:
            ctx.set_causal_attn(False)
        try:
            with Batch(min(n_batch, n), embd=self.n_embd, n_pos=4 if self.uses_mrope else 1) as batch:
                for start in range(0, n, n_batch):
                    count = min(n_batch, n - start)
                    rows = ffi.buffer(embeddings.data + start * self.n_embd, count * row_bytes)
                    where = positions[start : start + count] if positions is not None else n_past + start
                    batch.clear()
                    batch.add_embeddings(rows, where, seq_id, logits_last=logits_last and start + count == n)
                    ctx.decode(batch)
        finally:
            if chunk.non_causal:
                ctx.set_causal_attn(was_causal)
        return n_past + chunk.n_pos

    def eval_chunks(self, ctx: Context, chunks: Chunks, n_past: int, seq_id: int = 0, n_batch: int | None = None,
                    logits_last: bool = True) -> int:
        """Evaluate a whole tokenized prompt into ``seq_id`` from ``n_past`` with libmtmd's helper
        (text decoded, media encoded and decoded). Returns the new ``n_past``; with
        ``logits_last`` the last token's logits are at batch index -1."""
        chunks._require()
        if chunks.projector is not self:
            raise LlamaError("the chunks were tokenized by another projector")
        ctx_ptr = self._check_context(ctx, seq_id)
        n_batch = n_batch or ctx.n_batch
        if not 1 <= n_batch <= ctx.n_batch:
            raise ValueError(f"n_batch must be in 1..{ctx.n_batch}")
        if n_past < 0:
            raise ValueError("n_past must be >= 0")
        if not len(chunks):
            return n_past
        last = chunks[len(chunks) - 1]
        if logits_last and last.is_media:
            raise ContextError("the prompt ends with a media chunk, which libmtmd's helper gives no logits for: "
                               "end it with text, or use encode_chunk and decode_media(logits_last=True)")
        for chunk in chunks:
            if chunk.is_media:
                self._check_one_ubatch(ctx, chunk, n_batch)
        if n_past + chunks.n_tokens > ctx.n_ctx:
            raise ContextError(f"{chunks.n_tokens} tokens from position {n_past} do not fit the context of {ctx.n_ctx}")
        new_n_past = ffi.new("llama_pos *", n_past)
        was_causal = ctx.causal_attn
        with self._lock, self._using() as ptr:
            ctx._set_outputs(())
            code = lib.mtmd_helper_eval_chunks(ptr, ctx_ptr, chunks._require(), n_past, seq_id, n_batch,
                                               logits_last, new_n_past)
            ctx.set_causal_attn(was_causal)   # the helper leaves a context causal after media
        if code:
            ctx._raise_callback_error()
            check_mtmd(code, "mtmd_helper_eval_chunks")
        if logits_last:
            ctx._set_outputs(((len(last.tokens) - 1) % n_batch,))
        return new_n_past[0]
