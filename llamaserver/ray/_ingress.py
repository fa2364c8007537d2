"""The ingress deployment: HTTP in, each request forwarded to one ``LlamaReplica``.

It speaks the replicas' API by forwarding everything (method, path, query, headers, body);
it reads a body only to compute the ``RoutingKey`` the router goes by.

A replica that dies is a Ray error on the response stream.  Until the first byte of the
body has reached the client, nothing was lost: the request is sent again, once, to another
replica (``RoutingKey.avoid``).  A stream that already started cannot be replayed: it ends
with a last Server-Sent Event carrying the error (a plain body just ends).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..http._errors import ApiError
from ._replica import Head, Hello, HttpCall
from ._routing_key import ROUTED_PATHS, RoutingKey, routing_key

__all__ = ["Ingress", "REPLICA_HEADER"]

_log = logging.getLogger("llamaserver.ray")

# Which replica answered (its Serve replica id), on every answer: for logs, tests and clients
# that want to know where their conversation lives.
REPLICA_HEADER = b"x-llamaserver-replica"
# Failures of a replica (or of reaching one), as opposed to answers it gave.
_REPLICA_FAILURES = (RayError, RayServeException)


class _Lost(Exception):
    def __init__(self, replica_id: str | None, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.replica_id = replica_id


def _key(call: HttpCall) -> RoutingKey:
    if call.method != "POST" or call.path not in ROUTED_PATHS:
        return RoutingKey()
    try:
        return routing_key(call.path, json.loads(call.body or b"null"))
    except (ValueError, UnicodeDecodeError):   # the replica answers the 400
        return RoutingKey()


class Ingress:
    """Ray Serve calls ``__call__`` with each HTTP request (Starlette's ``Request``)."""

    def __init__(self, replicas: Any, retries: int = 1) -> None:
        self.replicas = replicas.options(stream=True)
        self.retries = retries

    async def __call__(self, request: Request) -> Response:
        call = HttpCall(request.method, request.url.path, request.url.query.encode("latin-1"),
                        tuple(request.headers.raw), await request.body())
        key = _key(call)
        failure: _Lost | None = None
        for attempt in range(self.retries + 1):
            try:
                replica_id, head, first, stream = await self._open(key, call)
                break
            except _Lost as lost:
                _log.warning("replica %s failed before answering (%s)%s", lost.replica_id, lost,
                             "; sending the request to another one" if attempt < self.retries else "")
                key = key.retry_avoiding(lost.replica_id)
                failure = lost
        else:
            error = ApiError(503, f"the model replica serving this request failed: {failure}",
                             "unavailable_error", retry_after=1)
            return JSONResponse(error.body(), status_code=503, headers={"Retry-After": "1"})
        sse = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                  for k, v in head.headers)
        response = StreamingResponse(self._rest(first, stream, sse), status_code=head.status)
        # the replica's own headers (the length is the stream's business now)
        response.raw_headers = [(k.lower(), v) for k, v in head.headers
                                if k.lower() not in (b"content-length", b"transfer-encoding")]
        response.raw_headers.append((REPLICA_HEADER, replica_id.encode()))
        return response

    async def _open(self, key: RoutingKey, call: HttpCall) -> tuple[str, Head, bytes, Any]:
        """Send ``call`` and wait for the replica's id, the head and the first body bytes
        (``_Lost`` on failure)."""
        stream = self.replicas.forward.remote(key, call)
        replica_id = None
        head: Head | None = None
        try:
            async for item in stream:
                if isinstance(item, Hello):
                    replica_id = item.replica_id
                elif isinstance(item, Head):
                    head = item
                elif item:
                    assert head is not None and replica_id is not None
                    return replica_id, head, item, stream
        except _REPLICA_FAILURES as exc:
            stream.cancel()
            raise _Lost(replica_id, exc) from None
        if head is None or replica_id is None:
            raise _Lost(replica_id, RuntimeError("the replica ended the request without an answer"))
        return replica_id, head, b"", stream

    async def _rest(self, first: bytes, stream: Any, sse: bool) -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in stream:
                yield chunk
        except _REPLICA_FAILURES as exc:
            _log.warning("replica failed while streaming: %s", exc)
            if sse:
                error = ApiError(500, f"the model replica serving this request failed: {exc}",
                                 "server_error")
                yield b"data: " + json.dumps(error.body()).encode() + b"\n\n"
        finally:
            stream.cancel()
