"""``Llama``: a model, a context and a sampler in one object, for scripts and notebooks."""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Mapping, Sequence

from llama_ffi._batch import Batch
from llama_ffi._chat_template import ChatTemplate
from llama_ffi._context import Context
from llama_ffi._decoder import TokenDecoder
from llama_ffi._default_model import default_model_path
from llama_ffi._embedding import Embedder, normalize_embedding
from llama_ffi._errors import ContextError
from llama_ffi._log import LOGGER_NAME
from llama_ffi._lora import LoraAdapter
from llama_ffi._model import Model
from llama_ffi._sampler_params import DEFAULT_SEED, SamplerParams
from llama_ffi._sampling import SamplerChain
from llama_ffi._stop import StopMatcher


class Llama:
    """Load a model and generate, chat or embed with it.

    ``Llama()`` uses ``default_model_path()``.  One sequence, not thread-safe;
    the KV cache is reused across calls for a prompt's common prefix.
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
        verbose: bool = False,
    ) -> None:
        if verbose:
            logger = logging.getLogger(LOGGER_NAME)
            if not logger.handlers:
                logger.addHandler(logging.StreamHandler())
            logger.setLevel(logging.INFO)
        self.model = Model(model_path if model_path is not None else default_model_path(), n_gpu_layers=n_gpu_layers)
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
        self.model.close()  # closes the generation context

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

    def _token_stream(self, tokens: list[int], max_tokens: int, sampling: dict[str, Any]) -> Iterator[int]:
        sampling.setdefault("seed", self.seed)
        params = SamplerParams(**sampling)
        ctx = self.context
        with SamplerChain(self.model, params, n_ctx=ctx.n_ctx) as chain:
            idx = self._prefill(tokens)
            chain.accept_prompt(tokens)
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

    def _text_stream(self, tokens: list[int], max_tokens: int, stop: Sequence[str],
                     sampling: dict[str, Any]) -> Iterator[str]:
        matcher = StopMatcher(list(stop))
        decoder = TokenDecoder(self.vocab)

        def pieces() -> Iterator[str]:
            for tok in self._token_stream(tokens, max_tokens, sampling):
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

    def stream(self, prompt: str | Sequence[int | str], *, max_tokens: int = 128, stop: Sequence[str] = (),
               **sampling: Any) -> Iterator[str]:
        """Yield the continuation of ``prompt`` as it is generated (never a partial character or stop string)."""
        if isinstance(stop, str):
            stop = [stop]
        return self._text_stream(self._prompt_tokens(prompt), max_tokens, stop, sampling)

    def generate(self, prompt: str | Sequence[int | str], *, max_tokens: int = 128, stop: Sequence[str] = (),
                 **sampling: Any) -> str:
        """The continuation of ``prompt`` (``sampling``: any ``SamplerParams`` field)."""
        return "".join(self.stream(prompt, max_tokens=max_tokens, stop=stop, **sampling))

    def chat(self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int = 128, stream: bool = False,
             stop: Sequence[str] = (), **sampling: Any) -> str | Iterator[str]:
        """The assistant's reply to ``messages`` (rendered with the model's chat template)."""
        template = self.chat_template
        text = template.render(messages, add_generation_prompt=True)
        has_bos = bool(template.bos_token) and text.startswith(template.bos_token)
        tokens = self.vocab.tokenize(text, add_special=not has_bos, parse_special=True)
        chunks = self.stream(tokens, max_tokens=max_tokens, stop=stop, **sampling)
        return chunks if stream else "".join(chunks)

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
