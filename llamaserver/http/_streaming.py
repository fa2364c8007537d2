"""Driving engine request streams from views, and Server-Sent Events.

A client that goes away must free its slot at once. Quart delivers a disconnect as
cancellation of the task that runs the view (or iterates the response body), so every
path that holds a :class:`RequestStream` cancels it in ``finally``.

At shutdown the engine ends running requests with a final event that says so
(``stopped_shutdown``): a stream sends it in its own shape, an answer not sent yet is a 503.
An open source counts as running for the server's drain until it is closed (or dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from quart import Response

from ..engine import (FinalEvent, PreparedRequest, PromptProgress, RequestStream, TokenEvent,
                      TokenProbs)
from ._context import ApiContext, dumps
from ._drain import shutting_down
from ._errors import ApiError, to_api_error

SSE_DONE = b"data: [DONE]\n\n"


def sse_event(payload: Any) -> bytes:
    return b"data: " + dumps(payload).encode("utf-8") + b"\n\n"


def sse_error(exc: BaseException) -> bytes:
    """An error that happens after the 200 headers went out: an event the client can read."""
    return sse_event(to_api_error(exc).body())


def sse_response(body: AsyncIterator[bytes]) -> Response:
    response = Response(body, status=200, content_type="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # A generation may legitimately stream for longer than any fixed send timeout.
    response.timeout = None
    return response


async def cancel_quietly(stream: RequestStream) -> None:
    with contextlib.suppress(Exception):
        await stream.cancel()


@dataclass
class Outcome:
    """A drained request: its final event and the per-token probabilities seen on the way."""

    final: FinalEvent
    probs: list[TokenProbs] = field(default_factory=list)


class EventSource:
    """One submitted request whose first event has already arrived.

    Waiting for the first event before answering means that errors the engine reports
    late (a bad grammar, a prompt too long) still get their own status code, not a 200
    followed by an error event.
    """

    def __init__(self, ctx: ApiContext, stream: RequestStream, first: TokenEvent | FinalEvent,
                 prepared: PreparedRequest) -> None:
        self.stream = stream
        self.prepared = prepared  # what was submitted: the request and its LoRA scales
        self._first: TokenEvent | FinalEvent | None = first
        self.finished = isinstance(first, FinalEvent)
        self._drain = ctx.drain
        self._drain.hold(self)

    @classmethod
    async def open(cls, ctx: ApiContext, prepared: PreparedRequest) -> "EventSource":
        try:
            stream = ctx.ready_engine().submit(prepared)
        finally:
            prepared.close()  # a chain that was not taken over is freed
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            raise ApiError(500, "The request ended without a result", "server_error") from None
        except BaseException:
            await cancel_quietly(stream)
            raise
        if isinstance(first, FinalEvent) and first.stopped_shutdown:
            raise shutting_down()  # cut before anything was sent
        return cls(ctx, stream, first, prepared)

    async def events(self) -> AsyncIterator[TokenEvent | FinalEvent]:
        """Every event, first one included; ends after the FinalEvent."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
            if isinstance(first, FinalEvent):
                return
        async for event in self.stream:
            if isinstance(event, FinalEvent):
                self.finished = True
                yield event
                return
            yield event

    async def close(self) -> None:
        self._drain.release(self)
        if not self.finished:
            self.finished = True
            await cancel_quietly(self.stream)

    async def drain(self) -> Outcome:
        probs: list[TokenProbs] = []
        try:
            async for event in self.events():
                if isinstance(event, FinalEvent):
                    if event.stopped_shutdown:
                        raise shutting_down()
                    return Outcome(event, probs)
                if not isinstance(event, PromptProgress) and event.probs:
                    probs.extend(event.probs)
        finally:
            await self.close()
        raise ApiError(500, "The request ended without a result", "server_error")


async def open_all(ctx: ApiContext, requests: Sequence[PreparedRequest]) -> list[EventSource]:
    """Submit several requests (n > 1, several prompts); all or none."""
    sources: list[EventSource] = []
    try:
        for request in requests:
            sources.append(await EventSource.open(ctx, request))
    except BaseException:
        for request in requests:
            request.close()
        await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)
        raise
    return sources


async def drain_all(sources: Sequence[EventSource]) -> list[Outcome]:
    tasks = [asyncio.ensure_future(s.drain()) for s in sources]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)


async def merge_events(sources: Sequence[EventSource]
                       ) -> AsyncIterator[tuple[int, TokenEvent | FinalEvent]]:
    """Events of several sources as they come, tagged with the source's index."""
    if len(sources) == 1:
        async for event in sources[0].events():
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    done = object()

    async def pump(index: int, source: EventSource) -> None:
        try:
            async for event in source.events():
                await queue.put((index, event))
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put((index, exc))
            return
        await queue.put((index, done))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(sources)]
    remaining = len(tasks)
    try:
        while remaining:
            index, item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)
