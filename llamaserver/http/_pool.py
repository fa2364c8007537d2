"""The HTTP worker pool: blocking per-request work (tokenizing, template rendering, parsing
and validating large bodies) in threads, with a bound on what may wait for them.

``ThreadPoolExecutor``'s own queue has no bound: a flood of requests that each render a
hostile template for its whole budget would queue behind each other for ever, and every
later request with them.  Here a task counts from submission until its thread is done with
it (a client that goes away does not stop a running render), and past ``workers +
queue_size`` such tasks a request is answered 503 with Retry-After at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ._errors import ApiError

T = TypeVar("T")

__all__ = ["BoundedPool"]


class BoundedPool:
    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.limit = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="llamaserver-http")
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished (queued or running)
        self._busy_s = 1.0  # recent time a task took, for Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._pending >= self.limit:
                raise ApiError(503, f"the server is busy ({self._pending} tasks are waiting for "
                               "its HTTP worker threads); retry later", "unavailable_error",
                               retry_after=max(1.0, self._busy_s))
            self._pending += 1
        loop = asyncio.get_running_loop()
        try:
            future = self._executor.submit(self._timed, fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future, loop=loop)

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        t0 = time.monotonic()
        try:
            return fn(*args)
        finally:
            self._busy_s = 0.8 * self._busy_s + 0.2 * (time.monotonic() - t0)

    def _done(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        # Queued tasks are dropped (their requests are answered by then or being cut); a
        # running render ends at its own deadline.
        self._executor.shutdown(wait=False, cancel_futures=True)

