"""What /openapi.json says about each route: one row per view, keyed by its endpoint name.

A route added later adds one row here: the pydantic model its view validates the body with,
the model of its answer, and, if it streams, the model of one SSE event.  ``_openapi`` turns
the rows into the document (schemas generated from the models, never written by hand), and
``tests/server/test_openapi.py`` fails, naming the route, for any rule in the app's url_map
that has no row.

A key is a view's endpoint name without the blueprint's prefix (``"completion"`` for
``llamaserver.completion``); ``also`` lists the other names of the same view (its aliases).
A key may end in ``*`` for a family of generated names (``"webui_asset_*"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ._anthropic_answers import MessageAnswer, MessageEvent, MessageTokenCount
from ._anthropic_request import MessagesRequest
from ._chat import ChatRequest
from ._chat_prompt import ChatTemplateOptions
from ._completion import CompletionRequest, InfillRequest
from ._embeddings import EmbeddingRequest, OpenAIEmbeddingRequest
from ._llama_answers import (AppliedTemplate, CompletionEvent, CompletionResult,
                             DetokenizeResult, EmbeddingList, EmbeddingResult, Health,
                             LoraAdapter, ModelList, Props, RerankAnswer, SlotActionResult,
                             SlotState, Success, TokenizeResult)
from ._oai_completions import TextCompletionRequest
from ._openai_answers import (ChatCompletion, ChatEvent, OpenAIEmbeddings, TextCompletion,
                              TextEvent)
from ._options import LoraScale
from ._rerank import RerankRequest
from ._responses_answers import InputTokens, ResponseEvent, ResponseObject
from ._responses_request import ResponsesRequest
from ._status import (HealthQuery, PropsUpdate, SlotActionQuery, SlotActionRequest, SlotPath,
                      SlotsQuery)
from ._tokenize import DetokenizeRequest, TokenizeRequest

__all__ = ["ANTHROPIC", "LLAMA", "OPENAI", "SERVER", "WEBUI", "Op", "OPERATIONS", "Text",
           "find_op"]

LLAMA, OPENAI, ANTHROPIC = "llama.cpp", "OpenAI", "Anthropic"
SERVER, DOCS, WEBUI = "server", "documentation", "web UI"


@dataclass(frozen=True)
class Text:
    """An answer that is not JSON: its media type (or the types it may be), in words."""

    media_type: str | tuple[str, ...]
    description: str

    @property
    def media_types(self) -> tuple[str, ...]:
        return (self.media_type,) if isinstance(self.media_type, str) else self.media_type


@dataclass(frozen=True)
class Op:
    summary: str
    tag: str
    request: Any = None       # the type the view validates the JSON body with (None: no body)
    answer: Any = None        # the type of the 200 answer (a Text for another media type)
    events: Any = None        # with "stream": true, the type of each SSE event's data
    done_event: bool = False  # the stream ends with "data: [DONE]" (OpenAI's streams)
    named_events: bool = False  # each event has a name, its data's "type" (Anthropic's,
                                # OpenAI Responses')
    query: type[BaseModel] | None = None   # the model the view validates request.args with
    path: type[BaseModel] | None = None    # ... and the path's variables with
    errors: tuple[int, ...] = ()           # the error statuses it can give (401 is added
                                           # for every route but the public ones when keys
                                           # are set)
    answer_statuses: tuple[int, ...] = (200,)  # statuses whose body is `answer`, not an error
    also: tuple[str, ...] = ()  # other endpoint names of the same view
    description: str = ""


# Generation and everything that reads a body: bad input, a body over the size limit, a
# feature this server was not started with (or a model that cannot do it), loading or a full
# queue.
_BODY = (400, 413, 501, 503)
# JavaScript's media type, as Python's mimetypes names it (which depends on its version and
# the system's mime.types)
_SCRIPT = ("text/javascript", "application/javascript")
_GEN_NOTE = ("With \"stream\": true the answer is Server-Sent Events; an error after the "
             "first event arrives as an event holding the error object.")

OPERATIONS: dict[str, Op] = {
    "health": Op(
        "Health and slot availability", SERVER, answer=Health, query=HealthQuery,
        answer_statuses=(200, 500, 503), also=("v1_health",),
        description="Public even with API keys, except with include_slots. 503 while the "
                    "model loads, or with fail_on_no_slot when no slot is idle."),
    "props_view": Op("Server properties and default generation settings", SERVER,
                     answer=Props, errors=(503,)),
    "set_props": Op("Set the shared system prompt (--props)", SERVER, request=PropsUpdate,
                    answer=Success, errors=_BODY),
    "slots": Op("Slots and the settings of their requests", SERVER, answer=list[SlotState],
                query=SlotsQuery, errors=(400, 501, 503)),
    "slot_action": Op("Save, restore or erase a slot's prompt cache (--slot-save-path)", SERVER,
                      request=SlotActionRequest, answer=SlotActionResult,
                      query=SlotActionQuery, path=SlotPath, errors=_BODY),
    "v1_models": Op("The model served", OPENAI, answer=ModelList, also=("models",)),
    "completion": Op(
        "Complete a prompt (llama.cpp's API)", LLAMA, request=CompletionRequest,
        answer=CompletionResult | list[CompletionResult], events=CompletionEvent,
        errors=_BODY, also=("completions",),
        description="One prompt gives one result; several prompts (or n_cmpl > 1) an array "
                    "of them, and in a stream their events interleave with their index. "
                    + _GEN_NOTE),
    "infill": Op("Fill in the middle (models with FIM tokens)", LLAMA, request=InfillRequest,
                 answer=CompletionResult, events=CompletionEvent, errors=_BODY,
                 description=_GEN_NOTE),
    "v1_completions": Op("Text completion (OpenAI)", OPENAI, request=TextCompletionRequest,
                         answer=TextCompletion, events=TextEvent, done_event=True,
                         errors=_BODY, description=_GEN_NOTE),
    "v1_chat_input_tokens": Op(
        "Count the tokens of a chat's prompt", OPENAI, request=ChatRequest,
        answer=InputTokens, errors=_BODY, also=("bare_chat_input_tokens",),
        description="The prompt a chat completion of this body would evaluate (template, "
                    "tools, media), without generating."),
    "v1_responses": Op(
        "Create a response (OpenAI's Responses API)", OPENAI, request=ResponsesRequest,
        answer=ResponseObject, events=ResponseEvent, named_events=True, errors=_BODY,
        also=("bare_responses",),
        description="Stateless: the whole conversation comes in input. With \"stream\": "
                    "true the answer is named Server-Sent Events (response.created, "
                    "response.in_progress, per output item .output_item.added, deltas, "
                    ".done, then response.completed), numbered by sequence_number; an "
                    "error after the first event is an error event."),
    "v1_responses_input_tokens": Op(
        "Count the tokens of a response's prompt", OPENAI, request=ResponsesRequest,
        answer=InputTokens, errors=_BODY, also=("bare_responses_input_tokens",)),
    "v1_chat_completions": Op("Chat completion (OpenAI)", OPENAI, request=ChatRequest,
                              answer=ChatCompletion, events=ChatEvent, done_event=True,
                              errors=_BODY, also=("chat_completions",),
                              description=_GEN_NOTE),
    "anthropic_messages": Op(
        "Create a message (Anthropic's Messages API)", ANTHROPIC, request=MessagesRequest,
        answer=MessageAnswer, events=MessageEvent, named_events=True, errors=_BODY,
        description="With \"stream\": true the answer is named Server-Sent Events "
                    "(message_start, content_block_start / _delta / _stop per block, "
                    "message_delta, message_stop, and ping while nothing else goes out); "
                    "an error after the first event is an error event."),
    "anthropic_count_tokens": Op(
        "Count the tokens of a message's prompt (Anthropic)", ANTHROPIC,
        request=MessagesRequest, answer=MessageTokenCount, errors=_BODY),
    "apply_template": Op("Render a conversation with the chat template", LLAMA,
                         request=ChatTemplateOptions, answer=AppliedTemplate, errors=_BODY),
    "embedding": Op("Embeddings, the seed's shape (--embedding)", LLAMA,
                    request=EmbeddingRequest, answer=EmbeddingResult, errors=_BODY),
    "embeddings": Op("Embeddings, one entry per input (--embedding)", LLAMA,
                     request=EmbeddingRequest, answer=EmbeddingList, errors=_BODY),
    "v1_embeddings": Op("Embeddings (OpenAI, --embedding)", OPENAI,
                        request=OpenAIEmbeddingRequest, answer=OpenAIEmbeddings, errors=_BODY),
    "rerank_rerank": Op(
        "Rank documents by relevance to a query (--reranking)", LLAMA, request=RerankRequest,
        answer=RerankAnswer, errors=_BODY,
        also=("rerank_reranking", "rerank_v1_rerank", "rerank_v1_reranking"),
        description="Jina/Cohere's form answers a result object; a body with \"texts\" "
                    "(Hugging Face TEI's form) answers a list."),
    "tokenize_view": Op("Tokenize text", LLAMA, request=TokenizeRequest,
                        answer=TokenizeResult, errors=_BODY),
    "detokenize_view": Op("Token ids to text", LLAMA, request=DetokenizeRequest,
                          answer=DetokenizeResult, errors=_BODY),
    "lora_adapters_view": Op("The loaded LoRA adapters and their scales", LLAMA,
                             answer=list[LoraAdapter], errors=(503,)),
    "set_lora_adapters_view": Op("Set the LoRA adapters' server-wide scales", LLAMA,
                                 request=list[LoraScale], answer=Success, errors=_BODY),
    "metrics": Op("Prometheus metrics (--metrics)", SERVER, errors=(501,),
                  answer=Text("text/plain", "Prometheus' text format")),
    "openapi": Op("This document", DOCS, answer=dict[str, Any]),
    "docs": Op("The API reference as a web page", DOCS,
               answer=Text("text/html", "the reference, made from this document")),
    # the web UI: app-level routes of LlamaServer.app (_webui), public
    "webui_prefix": Op("--api-prefix without its slash: a redirect to the page", WEBUI,
                       answer=Text("text/html", "a redirect (Location: the prefix and /)"),
                       answer_statuses=(308,)),
    "webui_index": Op("The web UI's page (with --path, the folder's index.html)", WEBUI,
                      answer=Text("text/html", "the page"), errors=(404,)),
    "webui_asset_*": Op("A file of the built-in web UI", WEBUI,
                        answer=Text(("text/html", *_SCRIPT, "text/css", "image/svg+xml"),
                                    "the file")),
    "webui_completion_js": Op("--path: /completion.js, the folder's or the built-in one",
                              WEBUI, answer=Text(_SCRIPT, "the JavaScript module")),
    "webui_static": Op(
        "--path: a file of the folder", WEBUI, errors=(401, 404, 405),
        answer=Text("*/*", "the file"),
        description="A GET on a path of the API that takes other methods gets the API's "
                    "answer: 401 without a valid key (with --api-key), else 405."),
}


def find_op(endpoint: str) -> tuple[str, Op] | None:
    """The row of an endpoint name (bare, without the blueprint's prefix) and its key."""
    for key, op in OPERATIONS.items():
        names = (key, *op.also)
        if endpoint in names or any(n.endswith("*") and endpoint.startswith(n[:-1])
                                    for n in names):
            return key, op
    return None
