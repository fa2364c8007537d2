"""A request as the worker thread sees it, from submission until its slot is released."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from typing import TYPE_CHECKING

from ._stream import Channel
from .types import GenerationRequest

if TYPE_CHECKING:
    from llama_ffi import SamplerChain

__all__ = ["Job", "SystemPromptUpdate"]


class Job:
    __slots__ = (
        "id", "request", "tokens", "bos_added", "prompt_text", "n_predict", "n_keep",
        "settings", "chain", "channel", "cancelled", "finished", "id_slot", "t_submit", "_wake",
        "lora",
    )

    def __init__(self, id: int, request: GenerationRequest, tokens: list[int], *,
                 bos_added: bool, prompt_text: str, n_predict: int, n_keep: int,
                 settings: dict[str, Any], chain: SamplerChain | None,
                 loop: asyncio.AbstractEventLoop,
                 wake: Callable[[], None]) -> None:
        self.id = id
        self.request = request
        self.tokens = tokens            # the request's own prompt tokens (no system prompt)
        self.bos_added = bos_added      # tokens[0] is a BOS the engine added
        self.prompt_text = prompt_text
        self.n_predict = n_predict      # effective limit: -1 = until the context is full
        self.n_keep = n_keep            # tokens of the prompt kept by a context shift
        self.settings = settings        # generation_settings (seed's shape)
        # Built at submission so that a bad grammar is an immediate error; the slot that
        # serves the request takes it over and closes it.
        self.chain = chain
        self.channel = Channel(loop)
        self.cancelled = False
        self.finished = False  # its final event (or error) has been sent
        self.id_slot = -1
        self.lora: tuple[float, ...] = ()  # a scale per loaded LoRA adapter, for this request
        self.t_submit = time.perf_counter()
        self._wake = wake

    def drop_chain(self) -> None:
        chain, self.chain = self.chain, None
        if chain is not None:
            chain.close()

    def cancel(self) -> None:
        """Any thread: mark the request cancelled and wake the worker to free its slot."""
        if not self.cancelled and not self.finished:
            self.cancelled = True
            self._wake()


class SystemPromptUpdate:
    """A queued change of the shared system prompt (applied when no slot is busy)."""

    __slots__ = ("text", "cancelled")

    def __init__(self, text: str) -> None:
        self.text = text
        self.cancelled = False
