"""One Ray Serve replica: one ``LlamaServer`` (its own model, slots and prompt cache).

The ingress forwards each HTTP request as an ``HttpCall``; the replica runs it through its
server's own ASGI app, in-process, and streams back what the app sends: first ``Hello``
(which replica took it), then ``Head`` (status and headers), then the body's chunks as
``bytes``.  So every endpoint, every error shape and the API-key check are the server's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from ..server import LlamaServer
from ..settings import ServerSettings
from ._routing_key import RoutingKey

__all__ = ["HttpCall", "Hello", "Head", "LlamaReplica"]


@dataclasses.dataclass(frozen=True)
class HttpCall:
    method: str
    path: str
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


@dataclasses.dataclass(frozen=True)
class Hello:
    replica_id: str


@dataclasses.dataclass(frozen=True)
class Head:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]


def _scope(call: HttpCall) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": call.method, "scheme": "http", "path": call.path, "raw_path": call.path.encode(),
            "root_path": "", "query_string": call.query_string, "headers": list(call.headers),
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 80)}


class LlamaReplica:
    """The deployment class (``serve.deployment(LlamaReplica)`` in ``_app``)."""

    async def __init__(self, settings: dict[str, Any]) -> None:
        self.server = LlamaServer(ServerSettings.model_validate(settings))
        await self.server.startup()   # a load failure fails the replica's start
        self.replica_id = serve.get_replica_context().replica_id.unique_id

    async def check_health(self) -> None:
        # Ray restarts a replica whose check fails: an engine that stopped (a remote device
        # gone, a failed worker thread) cannot serve again without a new process.
        if self.server.error is not None:
            raise RuntimeError(f"the server failed: {self.server.error}")

    async def forward(self, key: RoutingKey, call: HttpCall) -> AsyncIterator[Any]:
        """Run ``call`` through the server's app; ``key`` was only for the router."""
        yield Hello(self.replica_id)
        sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        gone = asyncio.Event()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": call.body, "more_body": False}
            await gone.wait()   # the caller went away: the app frees the slot
            return {"type": "http.disconnect"}

        app = asyncio.ensure_future(self.server.asgi(_scope(call), receive, sent.put))
        try:
            while True:
                getter = asyncio.ensure_future(sent.get())
                await asyncio.wait({getter, app}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    app.result()       # the app ended without a complete answer: raises
                    return
                message = getter.result()
                if message["type"] == "http.response.start":
                    yield Head(message["status"], tuple(
                        (bytes(k), bytes(v)) for k, v in message.get("headers", ())))
                elif message["type"] == "http.response.body":
                    if message.get("body"):
                        yield bytes(message["body"])
                    if not message.get("more_body", False):
                        return
        finally:
            gone.set()
            if not app.done():
                app.cancel()
            await asyncio.gather(app, return_exceptions=True)

    async def __del__(self) -> None:   # Serve awaits an async __del__ when it stops a replica
        await self.server.shutdown()
