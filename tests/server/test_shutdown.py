"""Graceful shutdown: on SIGTERM (or Ctrl-C, or ``LlamaServer.shutdown()``) new requests get
503, running ones may finish within --shutdown-timeout, then streams end with a final event
that says they were cut, the rest get 503, and the process exits 0 without a traceback."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from process_helpers import ServerProcess, llamaserver_process
from server_helpers import error_of, serve_in_thread, sse_events, wait_until

LONG = {"prompt": "Once upon a time", "n_predict": 4000, "ignore_eos": True}
CHAT = {"messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 4000, "ignore_eos": True}


class Call(threading.Thread):
    """One request in a thread of its own; ``result`` is what the client saw."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self.result: Any = None
        self.started_streaming = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            self.result = self._fn()
        except Exception as exc:  # the assertion that follows says what went wrong
            self.result = exc


def stream(server: ServerProcess, path: str, body: dict[str, Any],
           call: list[Call]) -> Callable[[], str]:
    def run() -> str:
        with httpx.stream("POST", server.url + path, json={**body, "stream": True},
                          timeout=120) as response:
            assert response.status_code == 200, response.read()
            text = ""
            for chunk in response.iter_text():
                text += chunk
                if "data: " in text:
                    call[0].started_streaming.set()
            return text
    return run


def started(server: ServerProcess, path: str, body: dict[str, Any]) -> Call:
    holder: list[Call] = []
    holder.append(Call(stream(server, path, body, holder)))
    assert holder[0].started_streaming.wait(120), holder[0].result
    return holder[0]


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> Call:
    return Call(lambda: httpx.post(server.url + path, json=body, timeout=120))


def half_sent_body(server: ServerProcess) -> tuple[socket.socket, Call]:
    """A client that sent its headers and part of its body, then waits."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"prompt": "hi", "n_predict": 4}).encode()
    sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])

    def answer() -> bytes:
        sock.settimeout(60)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data
    return sock, Call(answer)


def test_sigterm_drains_then_cuts() -> None:
    with llamaserver_process("-np", "3", "-c", "3072", "--shutdown-timeout", "2") as server:
        completion = started(server, "/completion", LONG)
        chat = started(server, "/v1/chat/completions", {**CHAT, "stream_options":
                                                        {"include_usage": True}})
        running = post(server, "/completion", LONG)  # the third slot, not streamed
        assert wait_until(lambda: httpx.get(server.url + "/health").json()[
            "slots_processing"] == 3, 60)
        queued = post(server, "/completion", LONG)   # waits for a slot
        sock, body_reader = half_sent_body(server)
        time.sleep(0.5)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # draining: new requests are refused, the running ones go on
        error_of(httpx.post(server.url + "/completion", json={"prompt": "x", "n_predict": 1}),
                 503, "unavailable_error")
        status = server.proc.wait(60)
        took = time.monotonic() - t0
        for call in (completion, chat, running, queued, body_reader):
            call.join(60)
        sock.close()
        stderr = server.stderr

    assert status == 0 and "Traceback" not in stderr, stderr
    assert 2 <= took < 2 + 10, took  # the drain time, then the cut (slack for a busy machine)

    events = sse_events(completion.result)
    final = events[-1]  # the seed's shape: a final event that says why it stopped
    assert final["stop"] is True and final["stop_type"] == "shutdown"
    assert not (final["stopped_eos"] or final["stopped_limit"] or final["stopped_word"])
    assert 0 < final["tokens_predicted"] < LONG["n_predict"]
    assert all(not e["stop"] for e in events[:-1])

    chunks = sse_events(chat.result)
    assert chunks[-1] == "[DONE]"  # OpenAI's: a finish_reason, the usage, [DONE]
    assert chunks[-3]["choices"][0]["finish_reason"] == "shutdown"
    assert chunks[-2]["usage"]["completion_tokens"] > 0

    for call in (running, queued):  # an answer not sent yet: 503 in the JSON shape
        error_of(call.result, 503, "unavailable_error")
    head, _, payload = body_reader.result.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"connection: close" in head.lower()
    assert json.loads(payload)["error"]["type"] == "unavailable_error"


def test_requests_that_end_within_the_drain_time_finish() -> None:
    with llamaserver_process("-np", "2", "-c", "2048", "--shutdown-timeout", "30") as server:
        short = started(server, "/completion", {"prompt": "Hello", "n_predict": 24,
                                                "ignore_eos": True})
        t0 = time.monotonic()
        status, _ = server.stop(signal.SIGTERM)
        short.join(60)
        assert status == 0 and "Traceback" not in server.stderr
    final = sse_events(short.result)[-1]
    assert final["stop_type"] == "limit" and final["tokens_predicted"] == 24
    assert time.monotonic() - t0 < 25  # it did not wait out the drain time once idle


def test_a_second_signal_stops_the_wait() -> None:
    with llamaserver_process("-np", "1", "-c", "1024", "--shutdown-timeout", "600") as server:
        completion = started(server, "/completion", LONG)
        server.proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        status, took = server.stop(signal.SIGINT)  # Ctrl-C twice
        completion.join(60)
        assert status == 0 and took < 15 and "Traceback" not in server.stderr
    assert sse_events(completion.result)[-1]["stop_type"] == "shutdown"


def test_shutdown_of_an_embedded_server() -> None:
    """``LlamaServer.shutdown()`` does the same for a server inside another program."""
    from llamaserver import LlamaServer

    server = LlamaServer(parallel=1, ctx_size=1024, shutdown_timeout=0.5)
    running = serve_in_thread(server.app)
    try:
        holder: list[Call] = []

        def run() -> str:
            with httpx.stream("POST", running.url + "/completion",
                              json={**LONG, "stream": True}, timeout=120) as response:
                text = ""
                for chunk in response.iter_text():
                    text += chunk
                    holder[0].started_streaming.set()
                return text

        holder.append(Call(run))
        assert holder[0].started_streaming.wait(60)
        assert running._loop is not None
        done = asyncio.run_coroutine_threadsafe(server.shutdown(), running._loop)
        assert wait_until(lambda: httpx.get(running.url + "/health").status_code == 503, 10)
        error_of(httpx.post(running.url + "/completion", json={"prompt": "x"}), 503,
                 "unavailable_error")
        done.result(60)
        holder[0].join(60)
        assert sse_events(holder[0].result)[-1]["stop_type"] == "shutdown"
    finally:
        running.stop()
