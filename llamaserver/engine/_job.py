"""A request on its way through the engine: prepared, queued, served, answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from typing import TYPE_CHECKING

from ._stream import Channel
from .types import GenerationRequest, SystemPrompt

if TYPE_CHECKING:
    from llama_ffi import SamplerChain

__all__ = ["PreparedRequest", "Job", "EmbeddingJob", "SystemPromptUpdate"]


class PreparedRequest:
    """A request checked against the engine, with its sampler chain built.

    Building the chain parses the grammar: ``Engine.prepare`` does it on the caller's thread
    (the HTTP layer's worker pool), never on the event loop or the engine's own thread.  The
    slot that serves the request takes the chain over; ``close()`` frees it otherwise.
    """

    __slots__ = ("request", "chain", "lora")

    def __init__(self, request: GenerationRequest, chain: SamplerChain,
                 lora: tuple[float, ...]) -> None:
        self.request = request
        self.chain: SamplerChain | None = chain
        self.lora = lora  # a scale per loaded adapter

    def take_chain(self) -> SamplerChain:
        chain, self.chain = self.chain, None
        if chain is None:
            raise RuntimeError("this request was already submitted")
        return chain

    def close(self) -> None:
        chain, self.chain = self.chain, None
        if chain is not None:  # never submitted: what the request holds is still ours
            chain.close()
            _close_media(self.request)


def _close_media(request: GenerationRequest) -> None:
    owner = request.media_owner
    if owner is not None:
        owner.close()


class _Queued:
    """What the worker's queue holds: something a client waits for, which it may abandon."""

    __slots__ = ("id", "channel", "cancelled", "finished", "t_submit", "_wake")

    def __init__(self, id: int, loop: asyncio.AbstractEventLoop,
                 wake: Callable[[], None]) -> None:
        self.id = id
        self.channel = Channel(loop)
        self.cancelled = False
        self.finished = False  # its final event (or error) has been sent
        self.t_submit = time.perf_counter()
        self._wake = wake

    def cancel(self) -> None:
        """Any thread: mark the request cancelled and wake the worker to free its slot."""
        if not self.cancelled and not self.finished:
            self.cancelled = True
            self._wake()

    def drop(self) -> None:
        """Free what the request holds that a slot never took over."""


class Job(_Queued):
    __slots__ = ("request", "chain", "lora", "id_slot")

    def __init__(self, id: int, prepared: PreparedRequest, loop: asyncio.AbstractEventLoop,
                 wake: Callable[[], None]) -> None:
        super().__init__(id, loop, wake)
        self.request = prepared.request
        self.lora = prepared.lora
        self.chain: SamplerChain | None = prepared.take_chain()
        self.id_slot = -1

    def drop(self) -> None:
        chain, self.chain = self.chain, None
        if chain is not None:
            chain.close()
        _close_media(self.request)


class EmbeddingJob(_Queued):
    __slots__ = ("tokens", "media", "media_owner")

    def __init__(self, id: int, tokens: list[int], loop: asyncio.AbstractEventLoop,
                 wake: Callable[[], None], media: tuple[Any, ...] = (),
                 media_owner: Any = None) -> None:
        super().__init__(id, loop, wake)
        self.tokens = tokens
        self.media = media              # MediaPiece s, as in GenerationRequest
        self.media_owner = media_owner

    def drop(self) -> None:
        owner, self.media_owner = self.media_owner, None
        if owner is not None:
            owner.close()


class SystemPromptUpdate:
    """A queued change of the shared system prompt (applied when no slot is busy)."""

    __slots__ = ("prompt", "cancelled")

    def __init__(self, prompt: SystemPrompt) -> None:
        self.prompt = prompt
        self.cancelled = False
