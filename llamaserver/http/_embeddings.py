"""Embeddings: POST /embedding (the seed's shape), /embeddings and /v1/embeddings (OpenAI)."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any, Literal

from pydantic import Field
from quart import Blueprint, Response

from llama_ffi import normalize_embedding

from ..engine import Engine, MediaPrompt
from ._body import ApiModel, JsonInt
from ._context import ApiContext, json_response
from ._errors import invalid, not_supported
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
    results = await asyncio.gather(*(engine.embed(tokens, media)
                                     for tokens, media in token_lists))
    return [([normalize_embedding(r.vectors[0], kind)] if r.pooled else r.vectors, r.n_tokens)
            for r in results]


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.post("/embedding")
    async def embedding() -> Response:
        req = await read_model(ctx, EmbeddingRequest)
        value = req.content if req.content is not None else req.input
        if value is None:
            raise invalid("'content' is required")
        results = await embed(ctx, split_prompts(value, "content"), req.embd_normalize,
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
        value = req.input if req.input is not None else req.content
        if value is None:
            raise invalid("'input' is required")
        results = await embed(ctx, split_prompts(value, "input"), req.embd_normalize, "input")
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
