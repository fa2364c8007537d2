"""Reranking: POST /rerank, /reranking, /v1/rerank, /v1/reranking (llama-server's API).

A reranker scores how well each document answers a query. The server runs it as embeddings
with rank pooling (``--reranking``, or ``--embedding --pooling rank``): each (query, document)
pair is one input, laid out as the model wants (``llama_ffi.RerankPrompt``), and its score is
the first value of the pooled output, as llama-server reports it (no sigmoid: a raw logit for
BERT-style cross-encoders, a probability for Qwen3-Reranker, whose graph ends in a softmax).

Two request forms, as in llama-server:

- Jina/Cohere: ``{"query", "documents", "top_n", "return_documents"}`` ->
  ``{"model", "object": "list", "usage", "results": [{"index", "relevance_score",
  "document"?: {"text"}}]}``;
- Hugging Face TEI (the body has ``texts``): ``{"query", "texts", "return_text"}`` ->
  ``[{"index", "score", "text"?}]``.

Results are sorted by score, best first (ties keep the documents' order), then cut to
``top_n``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from llama_ffi import RerankPrompt

from ._body import ApiModel, JsonInt
from ._context import ApiContext, json_response
from ._embeddings import embed_all
from ._errors import invalid, not_supported
from ._intake import read_model

ROUTES = ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking")

class RerankRequest(ApiModel):
    query: str
    documents: list[Any] | None = None
    texts: list[Any] | None = None          # TEI's name; it also selects TEI's answer
    top_n: JsonInt | None = Field(None, ge=0, le=2**31 - 1)
    return_documents: bool = False          # Jina, Cohere
    return_text: bool = False               # TEI
    model: str | None = None


def document_texts(value: list[Any] | None, field: str) -> list[str]:
    """Strings, or objects with a string ``text`` (Jina's and Cohere's document objects)."""
    if not value:
        raise invalid(f"\"{field}\" must be a non-empty string array")
    texts = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            item = item["text"]
        if not isinstance(item, str):
            raise invalid(f"'{field}[{i}]' must be a string or an object with a string 'text'")
        texts.append(item)
    return texts


def format_results(req: RerankRequest, texts: list[str], scores: list[float],
                   tei: bool) -> list[dict[str, Any]]:
    order = sorted(range(len(texts)), key=lambda i: -scores[i])  # stable: ties keep order
    top_n = len(texts) if req.top_n is None else req.top_n
    with_text = req.return_text or req.return_documents
    results = []
    for i in order[:top_n]:
        if tei:
            item: dict[str, Any] = {"index": i, "score": scores[i]}
            if with_text:
                item["text"] = texts[i]
        else:
            item = {"index": i, "relevance_score": scores[i]}
            if with_text:
                item["document"] = {"text": texts[i]}
        results.append(item)
    return results


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    async def rerank() -> Response:
        engine = ctx.ready_engine()
        prompt: RerankPrompt | None = engine.rerank_prompt
        if prompt is None:
            raise not_supported("This server does not support reranking. Start it with "
                                "`--reranking`")
        req = await read_model(ctx, RerankRequest)
        tei = "texts" in req.model_fields_set
        field = "documents" if req.documents is not None or not tei else "texts"
        texts = document_texts(req.documents if req.documents is not None else req.texts,
                               field)
        inputs = await ctx.run_blocking(prompt.tokenize, req.query, texts)
        outputs = await embed_all(engine, inputs, field)
        scores = [out.vectors[0][0] for out in outputs]
        results = format_results(req, texts, scores, tei)
        if tei:
            return json_response(results)
        n_tokens = sum(out.n_tokens for out in outputs)
        return json_response({"model": req.model or ctx.model_id, "object": "list",
                              "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
                              "results": results})

    for path in ROUTES:
        bp.add_url_rule(path, f"rerank{path.replace('/', '_')}", rerank, methods=["POST"])
