"""Embeddings: POST /embedding (the seed's shape), /embeddings and /v1/embeddings (OpenAI)."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any, Literal

from pydantic import Field
from quart import Blueprint, Response

from llama_ffi import normalize_embedding

from ..engine import Embedding, Engine, InvalidRequest, MediaPrompt
from ._body import ApiModel, JsonInt
from ._context import ApiContext, json_response
from ._errors import ApiError, invalid, not_supported, to_api_error
from ._intake import read_model
from ._media import decode_prompts
from ._prompts import PromptInput, split_prompts


class EmbeddingRequest(ApiModel):
    """Seed: ``content``; newer clients: ``input`` (one item or several)."""

    content: str | list[Any] | dict[str, Any] | None = None
    input: str | list[Any] | dict[str, Any] | None = None
    embd_normalize: JsonInt | None = Field(None, ge=-1, le=64)
    image_data: list[Any] | None = None


class OpenAIEmbeddingRequest(ApiModel):
    input: str | list[Any] | dict[str, Any]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: JsonInt | None = Field(None, ge=1)
    user: str | None = None
    embd_normalize: JsonInt | None = Field(None, ge=-1, le=64)


def _tokenize(engine: Engine, inputs: list[PromptInput], name: str
              ) -> list[tuple[list[int], MediaPrompt | None]]:
    out: list[tuple[list[int], MediaPrompt | None]] = []
    try:
        for i, item in enumerate(inputs):
            if item.media:
                assert isinstance(item.value, str)
                with_media = engine.media_prompt(item.value, item.media)
                out.append((with_media.tokens, with_media))
                continue
            tokens, _ = engine.vocab.tokenize_prompt(item.value, add_special=True,
                                                     parse_special=True)
            out.append((tokens, None))
    except ValueError as exc:  # InvalidTokenError and MediaError included
        for _, media in out:
            if media is not None:
                media.owner.close()
        raise invalid(f"Invalid '{name}': {exc}") from None
    return out


async def embed(ctx: ApiContext, inputs: list[PromptInput], kind: int | None, name: str,
                image_data: list[Any] | None = None) -> list[tuple[list[list[float]], int]]:
    """(vectors, prompt tokens) per input: one normalized vector when the server pools, else
    one per token (pooling "none", as they come).  ``kind`` None: --embd-normalize."""
    if kind is None:
        kind = ctx.settings.embd_normalize
    engine: Engine = ctx.ready_engine()
    if engine.embedding_pooled is None:  # started without --embedding (or --reranking)
        raise not_supported("This server does not support embeddings. Start it with "
                            "`--embeddings`")
    token_lists = await ctx.run_blocking(lambda: _tokenize(
        engine, decode_prompts(inputs, engine, ctx.media_policy, name, image_data), name))
    results = await embed_all(engine, [tokens for tokens, _ in token_lists], name,
                              [media for _, media in token_lists])
    return [([normalize_embedding(r.vectors[0], kind)] if r.pooled else r.vectors, r.n_tokens)
            for r in results]


# Inputs one request keeps queued at once. The worker evaluates one per step: one evaluated and
# one waiting keep it busy, and a long list of inputs never fills the wait queue alone (a 503
# that its client could not get past by retrying).
_IN_FLIGHT = 2


async def embed_all(engine: Engine, inputs: list[list[int]], field: str,
                    media: list[MediaPrompt | None] | None = None) -> list[Embedding]:
    """Each input's pooled output (or per-token rows), at most ``_IN_FLIGHT`` of them queued
    at a time (embeddings and rerank pairs alike); ``media`` the inputs' images, if any.

    The first failure stops the rest (their media are closed); an input the engine refuses
    (too long, empty) is a 400 naming it (``'input[3]'``).
    """
    results: list[Embedding | None] = [None] * len(inputs)
    failures: list[tuple[int, BaseException]] = []
    pending = iter(enumerate(inputs))
    with_media = media or [None] * len(inputs)

    async def lane() -> None:
        for i, tokens in pending:  # lanes share the iterator: each takes the next input
            if failures:
                if with_media[i] is not None:
                    with_media[i].owner.close()
                continue
            try:
                results[i] = await engine.embed(tokens, with_media[i])
            except Exception as exc:
                failures.append((i, exc))

    await asyncio.gather(*(lane() for _ in range(min(_IN_FLIGHT, len(inputs)))))
    if failures:
        i, exc = min(failures, key=lambda failure: failure[0])
        if isinstance(exc, InvalidRequest):  # say which input
            err = to_api_error(exc)
            raise ApiError(err.status, f"'{field}[{i}]': {err.message}", err.type,
                           extra=err.extra) from None
        raise exc
    return [r for r in results if r is not None]


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _inputs(req: EmbeddingRequest, name: str, other: str) -> list[PromptInput]:
    """The prompts of ``name``, else of its other spelling (the seed's routes take both)."""
    value = getattr(req, name)
    if value is None:
        value = getattr(req, other)
    if value is None:
        raise invalid(f"'{name}' is required")
    return split_prompts(value, name)


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.post("/embedding")
    async def embedding() -> Response:
        req = await read_model(ctx, EmbeddingRequest)
        results = await embed(ctx, _inputs(req, "content", "input"), req.embd_normalize,
                              "content", req.image_data)
        if ctx.ready_engine().embedding_pooled is False:  # upstream's per-token shape
            return json_response([{"index": i, "embedding": vectors}
                                  for i, (vectors, _) in enumerate(results)])
        if len(results) == 1:
            return json_response({"embedding": results[0][0][0]})
        return json_response([{"index": i, "embedding": vectors[0]}
                              for i, (vectors, _) in enumerate(results)])

    @bp.post("/embeddings")
    async def embeddings() -> Response:
        req = await read_model(ctx, EmbeddingRequest)
        results = await embed(ctx, _inputs(req, "input", "content"), req.embd_normalize, "input")
        return json_response([{"index": i, "embedding": vectors}
                              for i, (vectors, _) in enumerate(results)])

    @bp.post("/v1/embeddings")
    async def v1_embeddings() -> Response:
        req = await read_model(ctx, OpenAIEmbeddingRequest)
        if ctx.ready_engine().embedding_pooled is False:
            raise invalid("This server runs with --pooling none, which gives one vector per "
                          "token; OpenAI's embeddings need one per input. Use /embedding, or "
                          "start the server with another --pooling")
        results = await embed(ctx, split_prompts(req.input, "input"), req.embd_normalize,
                              "input")
        data = []
        for i, (vectors, _) in enumerate(results):
            vec = vectors[0]
            if req.dimensions is not None:
                vec = normalize_embedding(vec[:req.dimensions], req.embd_normalize
                                          if req.embd_normalize is not None
                                          else ctx.settings.embd_normalize)
            data.append({"object": "embedding", "index": i,
                         "embedding": _base64(vec) if req.encoding_format == "base64"
                         else vec})
        tokens = sum(n for _, n in results)
        return json_response({"object": "list", "data": data,
                              "model": req.model or ctx.model_id,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
