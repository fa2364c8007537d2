"""Embeddings on a context of their own, so that the generation context never has to switch.

The worker thread owns this context too and runs one embedding request per step between
generation steps.  A request must fit in one physical batch (``--ubatch-size`` tokens):
non-causal embedding models attend over the whole input at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import InvalidRequest

if TYPE_CHECKING:
    from llama_ffi import Batch, Context, Model

__all__ = ["Embedder"]


class Embedder:
    def __init__(self, model: Model, *, n_ctx: int, pooling: str | None, n_threads: int | None,
                 n_threads_batch: int | None, flash_attn: str) -> None:
        from llama_ffi import Batch, Context

        self.n_ctx = n_ctx
        self.ctx: Context = Context(
            model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_seq_max=1,
            n_threads=n_threads, n_threads_batch=n_threads_batch, embeddings=True,
            pooling=pooling, flash_attn=flash_attn)
        self.batch: Batch = Batch(n_ctx)
        self._encoder_only = bool(model.has_encoder and not model.has_decoder)

    def embed(self, tokens: list[int]) -> list[float]:
        if not tokens:
            raise InvalidRequest("the input is empty")
        if len(tokens) > self.n_ctx:
            raise InvalidRequest(
                f"input ({len(tokens)} tokens) is too large to process; increase the physical "
                f"batch size (--ubatch-size, now {self.n_ctx})")
        ctx, batch = self.ctx, self.batch
        ctx.memory_clear()
        batch.clear()
        for i, tok in enumerate(tokens):
            batch.add(tok, i, 0, True)
        if self._encoder_only:
            ctx.encode(batch)
        else:
            ctx.decode(batch)
        return ctx.embeddings_seq(0)

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
