"""Helpers shared by the server tests (a hypercorn thread, error and SSE parsing)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx

if TYPE_CHECKING:
    from llamaserver import LlamaServer

PARALLEL = 4  # slots of the session's main server
MODEL_ALIAS = "smollm2-test"
# SmolLM2 does not think by itself: this template opens a <think> block in its generation
# prompt (unless enable_thinking is false), and a thinking budget or a grammar makes the model
# close it.
THINKING_TEMPLATE = """{%- for m in messages -%}
<|im_start|>{{ m.role }}
{% if m.role == "assistant" and m.reasoning_content %}<think>
{{ m.reasoning_content }}
</think>
{% endif %}{{ m.content }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% if enable_thinking %}<think>
{% endif %}
{%- endif -%}"""


class Running(NamedTuple):
    server: "LlamaServer"
    url: str


class ThreadedServer:
    """Serve an ASGI app (or a LlamaServer) with hypercorn on 127.0.0.1:<free port>."""

    def __init__(self, app: Any, *, ready_path: str = "/health") -> None:
        self.app = app
        self.ready_path = ready_path
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-server")
        self._listening = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._listening.set()

    async def _main(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = Config()
        config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes its copy
        config.accesslog = None
        # session-scoped clients keep connections idle across slower tests: a server closing
        # them at hypercorn's default 5 s races the client's next request on that connection
        config.keep_alive_timeout = 600
        self._listening.set()
        try:
            await serve(self.app, config, shutdown_trigger=self._stop.wait)
        finally:
            sock.close()

    def start(self, timeout: float = 120.0) -> "ThreadedServer":
        self._thread.start()
        self._listening.wait(timeout)
        if self._error is not None:
            raise self._error
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + self.ready_path, timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self._error is not None:
                raise self._error
            time.sleep(0.1)
        raise TimeoutError(f"server at {self.url} not ready after {timeout}s")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


def serve_in_thread(app: Any, ready_path: str = "/health") -> ThreadedServer:
    return ThreadedServer(app, ready_path=ready_path).start()


@contextlib.contextmanager
def running_server(**settings: Any) -> Iterator[Running]:
    """A LlamaServer with ``settings``, served by hypercorn in a thread (a module's server)."""
    from llamaserver import LlamaServer

    server = LlamaServer(**settings)
    running = serve_in_thread(server.app)
    try:
        yield Running(server, running.url)
    finally:
        running.stop()


@contextlib.contextmanager
def upstream_server(args: Sequence[str], log_dir: Path) -> Iterator[httpx.Client]:
    """Upstream's llama-server from the same build (``build_native.py --with-server``) with
    ``args`` on a free port, one thread; a client for it once it is healthy."""
    import llama_ffi

    binary = Path(llama_ffi.__file__).parent / "_native" / "bin" / "llama-server"
    assert binary.is_file(), "build it: python build_native.py --with-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(log_dir / "llama-server.log", "w")
    proc = subprocess.Popen(
        [str(binary), *args, "-t", "1", "--host", "127.0.0.1", "--port", str(port), "--no-webui"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=600)
    try:
        up = wait_until(lambda: proc.poll() is not None or healthy(url), 120)
        assert proc.poll() is None, f"llama-server exited {proc.returncode}, see {log.name}"
        assert up, "llama-server did not become healthy"
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)
        log.close()


def error_of(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """Assert the llama.cpp/OpenAI error shape and return the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    error = body["error"]
    assert error["code"] == status
    assert error["type"] == kind
    assert isinstance(error["message"], str) and error["message"]
    return error


def sse_events(text: str) -> list[Any]:
    """Parse an SSE body into the JSON of each ``data:`` event (``"[DONE]"`` kept as text)."""
    events = []
    for block in text.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def sse_fields(text: str) -> list[dict[str, str]]:
    """The fields (``event``, ``data``, ...) of each event of an SSE body; comment-only blocks
    (keep-alive pings) are skipped."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines()
                      if line and not line.startswith(":"))
        if fields:
            events.append(fields)
    return events


def named_sse_events(text: str) -> list[tuple[str | None, Any]]:
    """Parse an SSE body of named events (Anthropic's, OpenAI Responses') into (event, JSON
    data) pairs."""
    return [(fields.get("event"), json.loads(fields["data"])) for fields in sse_fields(text)]


@contextlib.asynccontextmanager
async def in_process(app: Any, timeout: float = 120) -> AsyncIterator[httpx.AsyncClient]:
    """A client that calls the ASGI ``app`` in this process, with no socket between."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                 timeout=timeout) as client:
        yield client


def client_fixture(server: str, headers: dict[str, str] | None = None,
                   timeout: float = 120) -> Any:
    """A module-scoped fixture: an ``httpx.Client`` for the ``Running`` server that the fixture
    named ``server`` gives, sending ``headers`` with every request."""
    import pytest

    @pytest.fixture(scope="module")
    def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
        running = request.getfixturevalue(server)
        with httpx.Client(base_url=running.url, timeout=timeout, headers=headers) as c:
            yield c

    return client


def read_until(response: httpx.Response, predicate: Callable[[str], bool]) -> Iterator[str]:
    """Read ``response``'s lines up to the first that ``predicate`` accepts, and hand back the
    live iterator: the caller closes it to leave.  (Breaking out of ``iter_lines()`` drops the
    iterator, and that closes the connection at once: a check made after it races the
    server's noticing.)"""
    lines = response.iter_lines()
    for line in lines:
        if predicate(line):
            return lines
    raise AssertionError("the stream ended before the line looked for")


def leave_while_streaming(running: Running, path: str, body: dict[str, Any],
                          first_event: str, headers: dict[str, str]) -> None:
    """Stream ``body`` from ``path`` on a one-slot server, leave at ``first_event`` (an SSE
    ``event:`` name), and check that the request was cancelled and its slot freed."""
    engine = running.server.engine
    cancelled = engine.metrics().requests_cancelled
    with httpx.Client(base_url=running.url, timeout=60, headers=headers) as other:
        with other.stream("POST", path, json={**body, "stream": True}) as response:
            lines = read_until(response, lambda line: line == f"event: {first_event}")
            assert engine.slots()[0].is_processing  # generating, for seconds yet
            lines.close()
    # cancelled, not finished: the disconnect freed the slot
    assert wait_until(lambda: not engine.slots()[0].is_processing, 30)
    assert engine.metrics().requests_cancelled == cancelled + 1


def healthy(url: str) -> bool:
    """GET /health answers 200; a server still starting may refuse the connection."""
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()



@contextlib.contextmanager
def streaming_in_background(url: str, body: dict[str, Any],
                            headers: dict[str, str] | None = None) -> Iterator[None]:
    """Keep a streamed /completion running (its slot busy) while the block runs: a client
    that leaves frees its slot at once, so the stream stays open until the block ends."""
    started, release = threading.Event(), threading.Event()

    def run() -> None:
        with httpx.Client(base_url=url, timeout=120, headers=headers or {}) as c:
            with c.stream("POST", "/completion", json={**body, "stream": True}) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        started.set()
                        if release.is_set():
                            break

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(60), "the background stream never started"
        yield
    finally:
        release.set()
        thread.join(60)
