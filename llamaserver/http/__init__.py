"""The HTTP layer: Quart blueprints over the engine, one per :class:`LlamaServer`.

``create_blueprint(ctx, name=..., url_prefix=...)`` returns a fresh blueprint whose views
close over ``ctx`` (an :class:`ApiContext`), so several servers can be mounted in one app.

Endpoints (module)::

    GET  /health /v1/health                      _status      public even with API keys (not ?include_slots)
    GET  /props        POST /props (--props)     _status
    GET  /slots        POST /slots/<id>?action=  _status      save | restore | erase
    GET  /models /v1/models                      _status
    POST /completion /completions /infill        _completion  llama.cpp's own API
    POST /v1/completions                         _oai_completions
    POST /v1/chat/completions /chat/completions  _chat
    POST /apply-template                         _chat
    POST /v1/messages /v1/messages/count_tokens  _anthropic   Anthropic's Messages API
    POST /v1/responses /responses                _responses   OpenAI's Responses API
         (and .../input_tokens)
    POST /embedding /embeddings /v1/embeddings   _embeddings  (--embedding)
    POST /rerank /reranking /v1/rerank[ing]      _rerank      (--reranking)
    POST /tokenize /detokenize                   _tokenize
    GET  /metrics                                _metrics     (--metrics)
    GET  /openapi.json /docs                     _docs        the API's description

Request bodies are parsed by ``_body`` (strict JSON, bounded nesting, pydantic models);
every failure becomes an answer in ``_errors``, the single translation point.  Each route
has a row in ``_openapi_table`` (its request, answer and event models), from which
``_openapi`` builds /openapi.json.
"""

from __future__ import annotations

from quart import Blueprint

from . import (_anthropic, _chat, _completion, _docs, _embeddings, _lora, _metrics,
               _oai_completions, _rerank, _responses, _status, _tokenize)
from ._auth import add_app_auth, add_auth
from ._context import ApiContext
from ._drain import add_gate
from ._errors import ApiError, error_response, register_error_handlers

__all__ = ["ApiContext", "ApiError", "add_app_auth", "create_blueprint", "error_response",
           "register_error_handlers"]


def create_blueprint(ctx: ApiContext, *, name: str = "llamaserver",
                     url_prefix: str | None = None) -> Blueprint:
    bp = Blueprint(name, __name__, url_prefix=url_prefix or None)
    register_error_handlers(bp)
    add_auth(bp, ctx)
    add_gate(bp, ctx.drain)
    for module in (_status, _completion, _oai_completions, _chat, _embeddings, _rerank,
                   _tokenize, _lora, _metrics, _anthropic, _responses, _docs):
        module.add_routes(bp, ctx)
    return bp
