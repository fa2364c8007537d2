"""``Llama``: a model, a context and a sampler in one object, for scripts and notebooks."""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any, Iterator, Mapping, Sequence, Union

from llama_ffi._batch import Batch
from llama_ffi._chat_media import split_media_messages
from llama_ffi._chat_template import ChatTemplate
from llama_ffi._context import Context
from llama_ffi._decoder import TokenDecoder
from llama_ffi._default_model import default_model_path
from llama_ffi._devices import add_rpc_servers, default_devices
from llama_ffi._embedding import Embedder, normalize_embedding
from llama_ffi._errors import ContextError, MediaError
from llama_ffi._log import LOGGER_NAME
from llama_ffi._lora import LoraAdapter
from llama_ffi._model import Model
from llama_ffi._mtmd import Projector
from llama_ffi._mtmd_chunks import Bitmap, Chunks
from llama_ffi._sampler_params import DEFAULT_SEED, SamplerParams
from llama_ffi._sampling import SamplerChain
from llama_ffi._stop import StopMatcher

# An image or audio clip: its encoded bytes, a file path, or a Bitmap made by the projector.
Media = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", Bitmap]


class Llama:
    """Load a model and generate, chat or embed with it.

    ``Llama()`` uses ``default_model_path()``.  One sequence, not thread-safe;
    the KV cache is reused across calls for a prompt's common prefix (images included:
    the same image in the same place is not encoded again).  ``mmproj`` loads a multimodal
    projector: then ``generate``/``stream`` take ``images`` and ``chat`` takes OpenAI
    ``image_url``/``input_audio`` content parts (``data:`` URLs).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        n_threads: int | None = None,
        embeddings: bool = False,
        chat_template: str | None = None,
        seed: int = DEFAULT_SEED,
        lora: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
        | Mapping[str | os.PathLike[str], float] | None = None,
        mmproj: str | os.PathLike[str] | None = None,
        rpc: Sequence[str] | None = None,
        tensor_split: Sequence[float] | None = None,
        verbose: bool = False,
    ) -> None:
        if verbose:
            logger = logging.getLogger(LOGGER_NAME)
            if not logger.handlers:
                logger.addHandler(logging.StreamHandler())
            logger.setLevel(logging.INFO)
        # rpc: remote devices (rpc-server's host:port) that take n_gpu_layers with the local
        # GPUs, split by tensor_split; nothing else registered in the process is used.
        devices = default_devices(add_rpc_servers(rpc)) if rpc else None
        self.model = Model(model_path if model_path is not None else default_model_path(),
                           n_gpu_layers=n_gpu_layers, devices=devices, tensor_split=tensor_split)
        try:
            self.context = Context(self.model, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=n_threads)
            self._batch = Batch(self.context.n_batch)
            if lora is not None:
                # a path, a list of paths (scale 1) or {path: scale}
                if isinstance(lora, (str, os.PathLike)):
                    lora = [lora]
                scales = lora if isinstance(lora, Mapping) else dict.fromkeys(lora, 1.0)
                self.context.set_loras({LoraAdapter(self.model, path): scale
                                        for path, scale in scales.items()})
            self.projector = Projector(self.model, mmproj, n_threads=n_threads) if mmproj is not None else None
        except BaseException:
            self.model.close()
            raise
        self.vocab = self.model.vocab
        self.seed = seed
        self._n_threads = n_threads
        self._chat_template_override = chat_template
        self._template: ChatTemplate | None = None
        self._cached: list[int] = []  # the tokens whose keys/values sequence 0 holds
        self._embedder: Embedder | None = None
        if embeddings:
            self._embedding_context()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._batch.close()
        if self._embedder is not None:
            self._embedder.close()
        self.model.close()  # closes the generation context and the projector

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ tokens

    def tokenize(self, text: str | bytes, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self.vocab.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return self.vocab.detokenize(tokens, unparse_special=special)

    @property
    def chat_template(self) -> ChatTemplate:
        if self._template is None:
            self._template = ChatTemplate.from_model(self.model, self._chat_template_override)
        return self._template

    # ------------------------------------------------------------------ generation

    def _prompt_tokens(self, prompt: str | Sequence[int | str]) -> list[int]:
        tokens, _ = self.vocab.tokenize_prompt(prompt, add_special=True, parse_special=True)
        if not tokens:
            raise ValueError("the prompt is empty")
        if len(tokens) >= self.context.n_ctx:
            raise ContextError(f"prompt of {len(tokens)} tokens does not fit the context of {self.context.n_ctx}")
        return tokens

    def _prefill(self, tokens: list[int]) -> int:
        """Evaluate ``tokens`` reusing the cached prefix; returns the batch index of the last token's logits."""
        ctx = self.context
        keep = 0
        for cached, new in zip(self._cached, tokens):
            if cached != new:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # the last token is decoded again for its logits
        if not ctx.seq_rm(0, keep, -1):
            ctx.memory_clear()
            keep = 0
        self._cached = tokens[:keep]
        batch = self._batch
        last = 0
        for start in range(keep, len(tokens), batch.capacity):
            chunk = tokens[start : start + batch.capacity]
            batch.clear()
            last = batch.add_tokens(chunk, start, 0, logits_last=start + len(chunk) == len(tokens))
            ctx.decode(batch)
            self._cached.extend(chunk)
        return last

    def _prefill_chunks(self, chunks: Chunks) -> int:
        """``_prefill`` for a multimodal prompt: text decoded from the cached prefix on, media
        chunks encoded and decoded whole (a cached media chunk is kept or redone, never split)."""
        ctx, batch, projector = self.context, self._batch, self._require_projector()
        # what each position holds: a token id, or (media id, k) for a media chunk's k-th position
        units: list[Any] = []
        spans = []
        for chunk in chunks:
            spans.append((chunk, len(units)))
            key = chunk.id or object()   # a media chunk without an id never matches the cache
            units += [(key, k) for k in range(chunk.n_pos)] if chunk.is_media else chunk.tokens
        # an M-RoPE media chunk fills n_tokens cells of the cache but advances n_pos positions
        if max(len(units), chunks.n_tokens) >= ctx.n_ctx:
            raise ContextError(f"prompt of {chunks.n_tokens} tokens does not fit the context of {ctx.n_ctx}")
        keep = 0
        for cached, new in zip(self._cached, units):
            if cached != new:
                break
            keep += 1
        keep = min(keep, len(units) - 1)
        for chunk, start in spans:
            if chunk.is_media and start < keep < start + chunk.n_pos:
                keep = start
        if not ctx.seq_rm(0, keep, -1):
            ctx.memory_clear()
            keep = 0
        self._cached = units[:keep]
        last = 0
        for i, (chunk, start) in enumerate(spans):
            end = start + chunk.n_pos
            if end <= keep:
                continue
            is_last = i == len(spans) - 1
            if chunk.is_media:
                embeddings = projector.encode_chunk(chunk)
                projector.decode_media(ctx, chunk, embeddings, start, 0, logits_last=is_last, n_batch=batch.capacity)
                last = -1
            else:
                first = max(keep, start)
                tokens = chunk.tokens[first - start :]
                for off in range(0, len(tokens), batch.capacity):
                    piece = tokens[off : off + batch.capacity]
                    batch.clear()
                    last = batch.add_tokens(piece, first + off, 0, logits_last=is_last and off + len(piece) == len(tokens))
                    ctx.decode(batch)
            self._cached = units[:end]
        return last

    def _token_stream(self, prompt: list[int] | Chunks, max_tokens: int, sampling: dict[str, Any]) -> Iterator[int]:
        sampling.setdefault("seed", self.seed)
        params = SamplerParams(**sampling)
        ctx = self.context
        with SamplerChain(self.model, params, n_ctx=ctx.n_ctx) as chain:
            if isinstance(prompt, Chunks):
                with prompt:
                    idx = self._prefill_chunks(prompt)
                    chain.accept_prompt(prompt.text_tokens())
            else:
                idx = self._prefill(prompt)
                chain.accept_prompt(prompt)
            batch = self._batch
            for _ in range(max_tokens):
                tok = chain.sample(ctx, idx)
                if self.vocab.is_eog(tok):
                    return
                yield tok
                if len(self._cached) + 1 >= ctx.n_ctx:
                    return
                batch.clear()
                idx = batch.add(tok, len(self._cached), 0, True)
                ctx.decode(batch)
                self._cached.append(tok)

    def _text_stream(self, prompt: list[int] | Chunks, max_tokens: int, stop: Sequence[str],
                     sampling: dict[str, Any]) -> Iterator[str]:
        matcher = StopMatcher(list(stop))
        decoder = TokenDecoder(self.vocab)

        def pieces() -> Iterator[str]:
            for tok in self._token_stream(prompt, max_tokens, sampling):
                yield decoder.feed(tok)
            yield decoder.flush()

        for piece in pieces():
            if piece:
                text, word = matcher.feed(piece)
                if text:
                    yield text
                if word is not None:
                    return
        tail = matcher.release()
        if tail:
            yield tail

    def _require_projector(self) -> Projector:
        if self.projector is None:
            raise MediaError("this Llama has no multimodal projector: load one with Llama(..., mmproj=PATH)")
        return self.projector

    def _with_bitmaps(self, media: Sequence[Media], tokenize: Any) -> Chunks:
        """``tokenize(bitmaps)`` with a bitmap for each media item (the ones made here closed after)."""
        projector = self._require_projector()
        made: list[Bitmap] = []
        try:
            bitmaps = []
            for item in media:
                if isinstance(item, Bitmap):
                    bitmaps.append(item)
                    continue
                if isinstance(item, (bytes, bytearray, memoryview)):
                    made.append(projector.bitmap_from_bytes(item))
                elif isinstance(item, (str, os.PathLike)):
                    made.append(projector.bitmap_from_file(item))
                else:
                    raise TypeError(f"media are bytes, a path or a Bitmap, not {type(item).__name__}")
                bitmaps.append(made[-1])
            return tokenize(bitmaps)     # the chunks hold their own copy of the pixels
        finally:
            for bitmap in made:
                bitmap.close()

    def _media_prompt(self, prompt: str | Sequence[int], images: Sequence[Media]) -> list[int] | Chunks:
        if not images:
            return self._prompt_tokens(prompt)
        if not isinstance(prompt, str):
            raise TypeError("a prompt with images must be text (with a media marker per image, or none)")
        projector = self._require_projector()
        if projector.marker not in prompt:
            prompt = projector.marker * len(images) + prompt   # as llama-mtmd-cli: the images first
        return self._with_bitmaps(images, lambda bitmaps: projector.tokenize(prompt, bitmaps))

    def stream(self, prompt: str | Sequence[int | str], *, max_tokens: int = 128, stop: Sequence[str] = (),
               images: Sequence[Media] = (), **sampling: Any) -> Iterator[str]:
        """Yield the continuation of ``prompt`` as it is generated (never a partial character or stop string).

        ``images`` (or audio clips): encoded bytes, paths or ``Bitmap``s, one per media marker
        (``projector.marker``, ``<__media__>``) in ``prompt``; without markers they go first.
        """
        if isinstance(stop, str):
            stop = [stop]
        return self._text_stream(self._media_prompt(prompt, images), max_tokens, stop, sampling)

    def generate(self, prompt: str | Sequence[int | str], *, max_tokens: int = 128, stop: Sequence[str] = (),
                 images: Sequence[Media] = (), **sampling: Any) -> str:
        """The continuation of ``prompt`` (``sampling``: any ``SamplerParams`` field; ``images``: see ``stream``)."""
        return "".join(self.stream(prompt, max_tokens=max_tokens, stop=stop, images=images, **sampling))

    def chat(self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int = 128, stream: bool = False,
             stop: Sequence[str] = (), **sampling: Any) -> str | Iterator[str]:
        """The assistant's reply to ``messages`` (rendered with the model's chat template).

        A message's content may be a list of OpenAI parts: ``text``, ``image_url`` and
        ``input_audio`` (``data:`` URLs / base64; needs ``mmproj``).
        """
        template = self.chat_template
        media: list[bytes] = []
        placeholder = ""
        if any(isinstance(m.get("content"), list) for m in messages):
            # a marker no user text can contain: media go exactly where their parts were
            placeholder = f"<__media_{secrets.token_hex(8)}__>"
            limit = self.projector.limits.max_bytes if self.projector is not None else 20 * 1024 * 1024
            messages, media = split_media_messages(messages, placeholder, max_bytes=limit)
        text = template.render(messages, add_generation_prompt=True)
        has_bos = bool(template.bos_token) and text.startswith(template.bos_token)
        prompt: list[int] | Chunks
        if media:
            pieces = text.split(placeholder)
            if len(pieces) != len(media) + 1:
                raise MediaError(f"the chat template kept {len(pieces) - 1} of {len(media)} media parts")
            prompt = self._with_bitmaps(media, lambda bitmaps: self._require_projector().tokenize_parts(
                [p for i, piece in enumerate(pieces) for p in ((piece, bitmaps[i]) if i < len(bitmaps) else (piece,))],
                add_special=not has_bos))
        else:
            prompt = self._prompt_tokens(self.vocab.tokenize(text, add_special=not has_bos, parse_special=True))
        if isinstance(stop, str):
            stop = [stop]
        pieces_out = self._text_stream(prompt, max_tokens, stop, sampling)
        return pieces_out if stream else "".join(pieces_out)

    # ------------------------------------------------------------------ embeddings

    def _embedding_context(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.model, n_ctx=self.context.n_ctx, n_threads=self._n_threads)
        return self._embedder

    def embed(self, texts: str | Sequence[str], *, normalize: bool = True) -> list[list[float]]:
        """One pooled embedding per text (mean pooling when the model declares none)."""
        embedder = self._embedding_context()
        vectors = []
        for text in [texts] if isinstance(texts, str) else list(texts):
            tokens = self.vocab.tokenize(text, add_special=True, parse_special=False)
            if not tokens:
                raise ValueError("cannot embed an empty text")
            vector = embedder.embed(tokens)[0]
            vectors.append(normalize_embedding(vector) if normalize else vector)
        return vectors
