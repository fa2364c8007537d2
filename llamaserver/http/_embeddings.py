"""Embeddings: POST /embedding (the seed's shape), /embeddings and /v1/embeddings (OpenAI)."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, Literal

from pydantic import Field
from quart import Blueprint, Response, request

from llama_ffi import SamplerParams

from ..engine import Engine, GenerationRequest
from ._body import ApiModel, JsonInt, read_json_object, validate
from ._context import ApiContext, json_response
from ._errors import invalid, not_supported
from ._options import check_prompt_tokens
from ._streaming import drain_all, open_all


class EmbeddingRequest(ApiModel):
    """Seed: ``content``; newer clients: ``input`` (one item or several)."""

    content: str | list[Any] | None = None
    input: str | list[Any] | None = None
    embd_normalize: JsonInt = Field(2, ge=-1, le=64)
    image_data: list[Any] | None = None


class OpenAIEmbeddingRequest(ApiModel):
    input: str | list[Any]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: JsonInt | None = Field(None, ge=1)
    user: str | None = None
    embd_normalize: JsonInt = Field(2, ge=-1, le=64)


def normalize(vector: list[float], kind: int) -> list[float]:
    """-1 none, 0 max-absolute (to the int16 range), 1 taxicab, 2 euclidean, >2 p-norm."""
    if kind < 0 or not vector:
        return vector
    if kind == 0:
        norm = max(abs(v) for v in vector) / 32760.0
    elif kind == 1:
        norm = sum(abs(v) for v in vector)
    elif kind == 2:
        norm = math.sqrt(sum(v * v for v in vector))
    else:
        norm = sum(abs(v) ** kind for v in vector) ** (1.0 / kind)
    return [v / norm for v in vector] if norm > 0 else vector


def split_inputs(value: str | list[Any]) -> list[str | list[Any]]:
    """A string, strings, token ids (one input), or lists of token ids / mixed items."""
    if isinstance(value, str):
        return [value]
    if not value:
        raise invalid("'input' must not be empty")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [list(value)]
    items: list[str | list[Any]] = []
    for v in value:
        if isinstance(v, str):
            items.append(v)
        elif isinstance(v, list) and v and all(
                (isinstance(t, int) and not isinstance(t, bool)) or isinstance(t, str)
                for t in v):
            items.append(list(v))
        else:
            raise invalid("'input' items must be strings or arrays of token ids")
    return items


async def embed(ctx: ApiContext, inputs: list[str | list[Any]], kind: int
                ) -> list[tuple[list[float], int]]:
    """(normalized embedding, prompt tokens) per input."""
    if not ctx.settings.embedding:
        raise not_supported("This server does not support embeddings. Start it with "
                            "`--embeddings`")
    engine: Engine = ctx.ready_engine()
    requests = []
    for item in inputs:
        check_prompt_tokens(engine, item)
        requests.append(GenerationRequest(prompt=item, sampling=SamplerParams(), n_predict=0,
                                          embedding=True))
    outcomes = await drain_all(await open_all(ctx, requests))
    results = []
    for outcome in outcomes:
        vector = outcome.final.embedding
        if vector is None:
            raise not_supported("The model produced no pooled embedding (pooling 'none' is "
                                "not supported by this endpoint)")
        results.append((normalize(list(vector), kind), outcome.final.tokens_evaluated))
    return results


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.post("/embedding")
    async def embedding() -> Response:
        req = validate(EmbeddingRequest, await read_json_object(request))
        if req.image_data:
            raise not_supported("Image input is not supported by this server")
        value = req.content if req.content is not None else req.input
        if value is None:
            raise invalid("'content' is required")
        inputs = split_inputs(value)
        results = await embed(ctx, inputs, req.embd_normalize)
        if len(results) == 1:
            return json_response({"embedding": results[0][0]})
        return json_response([{"index": i, "embedding": vec}
                              for i, (vec, _) in enumerate(results)])

    @bp.post("/embeddings")
    async def embeddings() -> Response:
        req = validate(EmbeddingRequest, await read_json_object(request))
        value = req.input if req.input is not None else req.content
        if value is None:
            raise invalid("'input' is required")
        results = await embed(ctx, split_inputs(value), req.embd_normalize)
        return json_response([{"index": i, "embedding": [vec]}
                              for i, (vec, _) in enumerate(results)])

    @bp.post("/v1/embeddings")
    async def v1_embeddings() -> Response:
        req = validate(OpenAIEmbeddingRequest, await read_json_object(request))
        results = await embed(ctx, split_inputs(req.input), req.embd_normalize)
        data = []
        for i, (vec, _) in enumerate(results):
            if req.dimensions is not None:
                vec = normalize(vec[:req.dimensions], req.embd_normalize)
            data.append({"object": "embedding", "index": i,
                         "embedding": _base64(vec) if req.encoding_format == "base64"
                         else vec})
        tokens = sum(n for _, n in results)
        return json_response({"object": "list", "data": data,
                              "model": req.model or ctx.model_id,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
