"""Delivering the worker's events to asyncio event loops, from a thread of its own.

Waking an event loop (``call_soon_threadsafe`` writes to its self-pipe) releases the GIL;
the woken loop then usually takes it and runs the consumers before the writer gets it back.
Done by the worker, that would put the consumers' work (SSE formatting, socket writes)
between two decodes.  The worker instead drops the step's events into a ``SimpleQueue``
(no GIL release) and goes on to its next ``llama_decode`` (which releases the GIL); this
thread wakes the loops while the model runs, so the two overlap.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import TYPE_CHECKING, Any

from ._threadname import name_os_thread

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["EventPump", "Outbox", "Delivery"]

Outbox = dict[asyncio.AbstractEventLoop, list[tuple["Job", Any]]]


def _put_all(items: list[tuple[Job, Any]]) -> None:  # runs on the event loop
    for job, item in items:
        job.channel.put(item)


class Delivery:
    """The worker's side: a step's events collected per event loop, handed to the pump once."""

    __slots__ = ("_outbox", "_pump", "_final")

    def __init__(self, final: tuple[type, ...]) -> None:
        self._outbox: Outbox = {}
        self._pump = EventPump()
        self._final = final  # the items that complete a request's answer

    def send(self, job: Any, item: Any) -> None:
        if isinstance(item, self._final):
            job.finished = True
        loop = job.channel.loop
        items = self._outbox.get(loop)
        if items is None:
            items = self._outbox[loop] = []
        items.append((job, item))

    def deliver_now(self, pairs: list[tuple[Any, Any]]) -> None:
        """Hand (job, final item) pairs to the pump at once; from any thread (the step's
        buffer is the worker's own)."""
        outbox: Outbox = {}
        for job, item in pairs:
            job.finished = True
            outbox.setdefault(job.channel.loop, []).append((job, item))
        if outbox:
            self._pump.put(outbox)

    def flush(self) -> None:
        if self._outbox:
            outbox, self._outbox = self._outbox, {}
            self._pump.put(outbox)

    def close(self) -> None:
        self._pump.close()


class EventPump:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Outbox | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="llamaserver-events",
                                        daemon=True)
        self._thread.start()

    def put(self, outbox: Outbox) -> None:
        self._queue.put(outbox)

    def close(self) -> None:
        """Deliver what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        name_os_thread()
        q = self._queue
        while True:
            batches = [q.get()]
            while True:  # everything that piled up goes out in one wake-up per loop
                try:
                    batches.append(q.get_nowait())
                except queue.Empty:
                    break
            merged: Outbox = {}
            stop = False
            for outbox in batches:
                if outbox is None:
                    stop = True
                    continue
                for loop, items in outbox.items():
                    if loop in merged:
                        merged[loop].extend(items)
                    else:
                        merged[loop] = items
            for loop, items in merged.items():
                try:
                    loop.call_soon_threadsafe(_put_all, items)
                except RuntimeError:  # that loop is closed: nobody will read these any more
                    for job, _ in items:
                        job.cancel()
            if stop:
                return
