"""The continuous-batching inference engine behind llamaserver (no web framework inside).

Public API::

    Engine(settings)                 await start() / stop(); submit(GenerationRequest)
    RequestStream                    async iterator: TokenEvent ... FinalEvent; cancel(), result()
    GenerationRequest, TokenEvent, FinalEvent
    EngineError                      .status / .type for the HTTP answer
      InvalidRequest (400), Overloaded (503, .retry_after), NotReady (503), Unsupported (501)

One worker thread owns the llama_ffi ``Context``.  ``--parallel N`` slots are N sequences of
that context, each in a KV stream of its own (plus one holding the shared system prompt,
copied into a slot before its prompt); each step decodes one batch made of one token per
generating slot and prompt chunks of newly admitted requests.  A second thread only wakes
the event loops with each step's events, while the next step decodes.
Embedding requests (``--embedding``) run on a second, embeddings-enabled context owned by the
same thread, one per step between generation steps.
"""

from __future__ import annotations

from ._engine import Engine
from ._errors import EngineError, InvalidRequest, NotReady, Overloaded, Unsupported
from ._stream import RequestStream
from .types import FinalEvent, GenerationRequest, TokenEvent

__all__ = [
    "Engine",
    "RequestStream",
    "GenerationRequest",
    "TokenEvent",
    "FinalEvent",
    "EngineError",
    "InvalidRequest",
    "Overloaded",
    "NotReady",
    "Unsupported",
]
