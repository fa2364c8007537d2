"""The continuous-batching inference engine behind llamaserver (no web framework inside).

Public API::

    Engine(EngineConfig(...))        await start() / stop()
        prepare(GenerationRequest) -> PreparedRequest     any thread: checks, sampler chain
        submit(request or prepared) -> RequestStream      on the event loop
        await embed(tokens) -> Embedding
        slots() -> [SlotInfo]; metrics() -> EngineMetrics; set_system_prompt(SystemPrompt)
    RequestStream                    async iterator: TokenEvent ... FinalEvent; cancel(), result()
    EngineError (.kind: ErrorKind)   InvalidRequest, PromptTooLong, Overloaded, NotReady,
                                     Unsupported

One worker thread owns the llama_ffi ``Context``.  ``n_slots`` slots are sequences of that
context, each in a KV stream of its own (plus one holding the shared system prompt, copied
into a slot before its prompt); each step decodes one batch made of one token per generating
slot and prompt chunks of newly admitted requests.  A second thread only wakes the event
loops with each step's events, while the next step decodes.  Embedding requests
(``embedding=True``) run on a second, embeddings-enabled context owned by the same thread,
one per step between generation steps.
"""

from __future__ import annotations

from ._engine import Engine
from ._errors import (
    EngineError,
    ErrorKind,
    InvalidRequest,
    NotReady,
    Overloaded,
    PromptTooLong,
    Unsupported,
)
from ._job import PreparedRequest
from ._media import MediaPrompt
from ._metrics import EngineMetrics
from ._stream import RequestStream
from .config import EngineConfig
from .types import (
    Embedding,
    FinalEvent,
    GenerationRequest,
    LoraInfo,
    PromptProgress,
    SlotErased,
    SlotInfo,
    SlotRestored,
    SlotSaved,
    SystemPrompt,
    Timings,
    TokenBudget,
    TokenEvent,
    TokenProbs,
)

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineMetrics",
    "PreparedRequest",
    "MediaPrompt",
    "RequestStream",
    "GenerationRequest",
    "SystemPrompt",
    "TokenBudget",
    "TokenEvent",
    "TokenProbs",
    "PromptProgress",
    "FinalEvent",
    "Timings",
    "Embedding",
    "SlotInfo",
    "LoraInfo",
    "SlotSaved",
    "SlotRestored",
    "SlotErased",
    "EngineError",
    "ErrorKind",
    "InvalidRequest",
    "PromptTooLong",
    "Overloaded",
    "NotReady",
    "Unsupported",
]
