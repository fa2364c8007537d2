"""The asyncio side of a request: events arrive from the worker thread, a consumer awaits them.

The worker never touches asyncio objects directly: the events of a step reach each event
loop in one ``call_soon_threadsafe`` call (see :mod:`._pump`), which fills the requests'
:class:`Channel` s on the loop's own thread.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ._errors import EngineError
from .types import FinalEvent, TokenEvent

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["Channel", "RequestStream"]


class Channel:
    """Events of one request, filled on its event loop's thread, read by one consumer."""

    __slots__ = ("loop", "_items", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:  # event-loop thread only
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self.loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class RequestStream:
    """Async iterator of :class:`TokenEvent` ... then exactly one :class:`FinalEvent`.

    An :class:`EngineError` that ends the request (e.g. a prompt that does not fit, shutdown)
    is raised from ``__anext__``.  ``cancel()``, a cancelled consumer task, or dropping the
    stream all free the request's slot at the engine's next step.
    """

    def __init__(self, job: Job) -> None:
        self._job = job
        self._finished = False
        self._final: FinalEvent | None = None
        # Abandoning the stream (a consumer that stops iterating and lets go of it) cancels.
        weakref.finalize(self, job.cancel)

    @property
    def id_task(self) -> int:
        return self._job.id

    @property
    def id_slot(self) -> int:
        """The slot serving the request, or -1 while it waits."""
        return self._job.id_slot

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> TokenEvent | FinalEvent:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._job.channel.get()
        except asyncio.CancelledError:
            # The consumer went away (e.g. the HTTP client disconnected): free the slot now.
            self._job.cancel()
            raise
        if isinstance(item, FinalEvent):
            self._finished = True
            self._final = item
            return item
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    async def cancel(self) -> None:
        """Stop the request; its slot is free after the engine's next step."""
        self._finished = True
        self._job.cancel()

    async def aclose(self) -> None:
        await self.cancel()

    async def __aenter__(self) -> RequestStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._final is None:
            await self.cancel()

    async def result(self) -> FinalEvent:
        """Drain the stream and return its :class:`FinalEvent`."""
        if self._final is not None:
            return self._final
        async for event in self:
            if isinstance(event, FinalEvent):
                return event
        if self._final is not None:
            return self._final
        raise EngineError("the request was cancelled")
