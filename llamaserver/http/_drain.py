"""Graceful shutdown of one server's HTTP side.

``LlamaServer.shutdown()`` (SIGTERM and Ctrl-C in the ``llamaserver`` command) runs::

    drain.start()                 new requests: 503 (the gate, before any view runs)
    await drain.wait_idle(t)      running requests may finish within --shutdown-timeout
    drain.cut()                   requests still reading their body: 503
    engine.stop()                 generations still running end with a final event that says
                                  so (FinalEvent.stopped_shutdown); queued ones: 503
    await drain.wait_idle(grace)  the views write those answers before the sockets close

A request counts from the gate until its view returns; a streamed answer's event sources
count until their last event is written (the view returns before the body is sent).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable
from typing import TypeVar

from quart import Blueprint, request

from ._errors import ApiError

T = TypeVar("T")

__all__ = ["Drain", "add_gate", "shutting_down"]

_POLL_S = 0.02


def shutting_down() -> ApiError:
    # Connection: close: the server is going away, and the body may be unread.
    return ApiError(503, "the server is shutting down", "unavailable_error", retry_after=1,
                    close=True)


class Drain:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A fresh state for a (re)started server."""
        self.draining = False
        self.is_cut = False
        self._hurry = False
        self._requests: set[int] = set()
        self._sources: weakref.WeakSet[object] = weakref.WeakSet()  # a dropped one ends
        self._waiters: set[asyncio.Future[None]] = set()

    # ---- the requests' side --------------------------------------------------------------
    def admit(self, request: object) -> None:
        """Count a request that reaches a view; 503 once the drain has started."""
        if self.draining:
            raise shutting_down()
        self._requests.add(id(request))

    def leave(self, request: object) -> None:
        self._requests.discard(id(request))

    def hold(self, source: object) -> None:
        self._sources.add(source)

    def release(self, source: object) -> None:
        self._sources.discard(source)

    async def until_cut(self, work: Awaitable[T]) -> T:
        """``await work``, or 503 if the drain cuts first (``work`` is then cancelled)."""
        if self.is_cut:
            raise shutting_down()
        task = asyncio.ensure_future(work)
        cut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(cut)
        try:
            await asyncio.wait((task, cut), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters.discard(cut)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled() or not task.done():
            raise shutting_down()
        return task.result()

    # ---- the server's side ---------------------------------------------------------------
    @property
    def busy(self) -> int:
        return len(self._requests) + len(self._sources)

    def start(self) -> None:
        self.draining = True

    def hurry(self) -> None:
        """Stop waiting for running requests (a second Ctrl-C)."""
        self._hurry = True

    async def wait_idle(self, timeout: float) -> bool:
        """True once no request is running; False after ``timeout`` seconds (or a hurry,
        before the cut: after it, the views only write their last answers)."""
        deadline = time.monotonic() + timeout
        while (self.busy and not (self._hurry and not self.is_cut)
               and time.monotonic() < deadline):
            await asyncio.sleep(_POLL_S)
        return not self.busy

    def cut(self) -> None:
        self.draining = self.is_cut = True
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)



def add_gate(bp: Blueprint, drain: Drain) -> None:
    """Count the blueprint's requests, and answer 503 to new ones once the drain started (after
    the API key check, so that the answer tells nobody more than a 401 would)."""

    @bp.before_request
    async def admit() -> None:
        drain.admit(request._get_current_object())  # type: ignore[attr-defined]

    @bp.teardown_request
    async def leave(_exc: BaseException | None) -> None:
        drain.leave(request._get_current_object())  # type: ignore[attr-defined]
