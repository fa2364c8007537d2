"""``Embedder``: embeddings on a context of their own, and their normalization.

A request must fit in one physical batch: non-causal embedding models attend over the whole
input at once, so the context is sized to one ubatch and cleared before each input.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from llama_ffi._batch import Batch
from llama_ffi._context import Context
from llama_ffi._errors import ContextError

if TYPE_CHECKING:
    from llama_ffi._model import Model

# Architectures whose positions are rows of a learned table of n_ctx_train rows: ggml aborts
# the process on a position past it (GGML_ASSERT in get_rows), so no input may be longer.
_LEARNED_POSITIONS = frozenset({"bert", "gpt2", "starcoder"})


def normalize_embedding(vector: Sequence[float], kind: int = 2) -> list[float]:
    """llama.cpp's ``embd_normalize``: -1 none, 0 max-absolute (to the int16 range), 1 taxicab,
    2 euclidean, > 2 p-norm."""
    vector = list(vector)
    if kind < 0 or not vector:
        return vector
    if kind == 0:
        norm = max(abs(v) for v in vector) / 32760.0
    elif kind == 1:
        norm = math.fsum(abs(v) for v in vector)
    elif kind == 2:
        norm = math.sqrt(math.fsum(v * v for v in vector))
    else:
        norm = math.fsum(abs(v) ** kind for v in vector) ** (1.0 / kind)
    return [v / norm for v in vector] if norm > 0 else vector


class Embedder:
    """One embeddings-enabled context on ``model``; owns it and its batch.

    ``pooling`` is the context's pooling ("mean", "cls", "last", "rank" or "none"); a model
    that declares none (a generative model) is pooled with "mean" unless "none" is asked for,
    which gives one vector per token.  With "rank" (rerankers) the pooled row holds the
    model's ``n_cls_out`` scores.  ``n_ctx`` is the longest input: one ubatch, and never more
    than the model's learned position table holds.
    """

    def __init__(self, model: Model, *, n_ctx: int = 512, pooling: str | None = None,
                 n_threads: int | None = None, n_threads_batch: int | None = None,
                 flash_attn: str = "auto") -> None:
        if pooling is None and model.pooling_type in ("none", "unspecified"):
            pooling = "mean"
        self.context = Context(
            model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_seq_max=1, n_threads=n_threads,
            n_threads_batch=n_threads_batch, embeddings=True, pooling=pooling,
            flash_attn=flash_attn)
        try:
            self.batch = Batch(self.context.n_ubatch)
        except BaseException:
            self.context.close()
            raise
        self.n_ctx: int = self.context.n_ubatch  # the longest input
        if model.metadata.get("general.architecture") in _LEARNED_POSITIONS:
            self.n_ctx = min(self.n_ctx, model.n_ctx_train)
        self.pooling: str = self.context.pooling
        self._encoder_only = bool(model.has_encoder and not model.has_decoder)

    @property
    def pooled(self) -> bool:
        """One vector per input (False: one per token)."""
        return self.pooling != "none"

    def embed(self, tokens: Sequence[int]) -> list[list[float]]:
        """The pooled vector of ``tokens`` as a one-row list, or one row per token (pooling none).

        ``ContextError`` when the input is empty or larger than one batch.
        """
        n = len(tokens)
        if n == 0:
            raise ContextError("the input is empty")
        if n > self.n_ctx:
            raise ContextError(f"the input ({n} tokens) is larger than the embedding batch "
                               f"({self.n_ctx} tokens)")
        ctx, batch = self.context, self.batch
        ctx.memory_clear()
        batch.clear()
        for pos, tok in enumerate(tokens):
            batch.add(tok, pos, 0, True)
        if self._encoder_only:
            ctx.encode(batch)
        else:
            ctx.decode(batch)
        if self.pooled:
            return [ctx.embeddings_seq(0)]
        return [ctx.embeddings_ith(i) for i in range(n)]

    def close(self) -> None:
        self.batch.close()
        self.context.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
